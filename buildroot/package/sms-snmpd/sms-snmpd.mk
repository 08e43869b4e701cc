################################################################################
#
# sms-snmpd
#
################################################################################

SMS_SNMPD_VERSION = $(SMS_VERSION)
SMS_SNMPD_SITE = $(SMS_SITE)
SMS_SNMPD_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_SNMPD_SUBDIR = crates/sms-snmpd
SMS_SNMPD_LICENSE = Apache-2.0

$(eval $(cargo-package))
