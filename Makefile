# SMS OS: firmware of the Security Management System appliance.
#   make run   - build and run the appliance against the simulated world
#   make test  - install what is missing, then fmt, clippy and every test
#   make bench - benchmarks side by side with the well-known peers

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test deps check bench clean

deps:
	@scripts/ensure-deps.sh

run: deps
	@scripts/run-native.sh

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps check
	$(CARGO) test --workspace

bench: deps
	$(CARGO) build --release -p sms-sim -p sms-ntpd -p sms-bench
	./target/release/updated-download
	./target/release/ntp-serve

clean:
	$(CARGO) clean
	rm -rf run out
