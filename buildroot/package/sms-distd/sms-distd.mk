################################################################################
#
# sms-distd
#
################################################################################

SMS_DISTD_VERSION = $(SMS_VERSION)
SMS_DISTD_SITE = $(SMS_SITE)
SMS_DISTD_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_DISTD_SUBDIR = crates/sms-distd
SMS_DISTD_LICENSE = Apache-2.0

$(eval $(cargo-package))
