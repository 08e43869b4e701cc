################################################################################
#
# sms-updated
#
################################################################################

SMS_UPDATED_VERSION = $(SMS_VERSION)
SMS_UPDATED_SITE = $(SMS_SITE)
SMS_UPDATED_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_UPDATED_SUBDIR = crates/sms-updated
SMS_UPDATED_LICENSE = Apache-2.0

$(eval $(cargo-package))
