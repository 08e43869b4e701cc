################################################################################
#
# sms-backup
#
################################################################################

SMS_BACKUP_VERSION = $(SMS_VERSION)
SMS_BACKUP_SITE = $(SMS_SITE)
SMS_BACKUP_SITE_METHOD = $(SMS_SITE_METHOD)
SMS_BACKUP_SUBDIR = crates/sms-backup
SMS_BACKUP_LICENSE = Apache-2.0

$(eval $(cargo-package))
