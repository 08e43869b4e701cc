################################################################################
#
# sms-logd
#
################################################################################

SMS_LOGD_VERSION = $(SMS_VERSION)
SMS_LOGD_SITE = $(SMS_SITE)
SMS_LOGD_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_LOGD_SUBDIR = crates/sms-logd
SMS_LOGD_LICENSE = Apache-2.0

$(eval $(cargo-package))
