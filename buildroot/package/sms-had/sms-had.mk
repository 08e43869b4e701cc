################################################################################
#
# sms-had
#
################################################################################

SMS_HAD_VERSION = $(SMS_VERSION)
SMS_HAD_SITE = $(SMS_SITE)
SMS_HAD_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_HAD_SUBDIR = crates/sms-had
SMS_HAD_LICENSE = Apache-2.0

$(eval $(cargo-package))
