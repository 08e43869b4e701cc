# SMS OS: firmware of the Security Management System appliance.
#   make run   - build and run the appliance against the simulated world
#   make test  - install what is missing, then fmt, clippy and every test
#   make bench - benchmarks side by side with the well-known peers

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run run-native image test test-image deps check bench clean

deps:
	@scripts/ensure-deps.sh

run: deps
	@qemu/run.sh

# The daemons natively on this host against the simulators (no image).
run-native: deps
	@scripts/run-native.sh

# The development image (the simulated world's trust, test community and
# users): what `make run` and the boot test boot. A production image needs
# the vendor's trust: SMS_TMC_CA=... SMS_TRUST_ROOT=... image/build.sh
image: deps
	SMS_LAYER=development image/build.sh

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps check
	image/unit-security.sh
	$(CARGO) test --workspace
	image/check-production.sh
	buildroot/validate.sh
	qemu/boot-test.sh

# Only the image boot test.
test-image: deps
	qemu/boot-test.sh

bench: deps
	$(CARGO) build --release -p sms-sim -p sms-ntpd -p sms-snmpd -p sms-had -p sms-bench
	./target/release/updated-download
	./target/release/ntp-serve
	./target/release/distd-pull
	./target/release/distd-delta
	./target/release/distd-push
	./target/release/snmp-agent
	./target/release/snmp-traps
	./target/release/ha-commit
	./target/release/lan-segment

clean:
	$(CARGO) clean
	rm -rf run out
