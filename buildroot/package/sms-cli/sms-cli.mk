################################################################################
#
# sms-cli
#
################################################################################

SMS_CLI_VERSION = $(SMS_VERSION)
SMS_CLI_SITE = $(SMS_SITE)
SMS_CLI_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_CLI_SUBDIR = crates/sms-cli
SMS_CLI_LICENSE = Apache-2.0

$(eval $(cargo-package))
