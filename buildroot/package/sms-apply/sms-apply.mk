################################################################################
#
# sms-apply
#
################################################################################

SMS_APPLY_VERSION = $(SMS_VERSION)
SMS_APPLY_SITE = $(SMS_SITE)
SMS_APPLY_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_APPLY_SUBDIR = crates/sms-apply
SMS_APPLY_LICENSE = Apache-2.0

$(eval $(cargo-package))
