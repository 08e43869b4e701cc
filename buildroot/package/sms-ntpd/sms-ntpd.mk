################################################################################
#
# sms-ntpd
#
################################################################################

SMS_NTPD_VERSION = $(SMS_VERSION)
SMS_NTPD_SITE = $(SMS_SITE)
SMS_NTPD_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_NTPD_SUBDIR = crates/sms-ntpd
SMS_NTPD_LICENSE = Apache-2.0

$(eval $(cargo-package))
