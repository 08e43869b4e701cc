################################################################################
#
# SMS OS: the workspace's daemons come from one git repository (this one),
# fetched with the git site method so that Buildroot's cargo download
# post-process vendors their crates into the download directory: a later
# build works offline. Set SMS_VERSION to a tag or commit for a release.
#
################################################################################

SMS_VERSION ?= main
SMS_SITE ?= $(realpath $(BR2_EXTERNAL_SMS_PATH)/..)
SMS_SITE_METHOD = git

include $(sort $(wildcard $(BR2_EXTERNAL_SMS_PATH)/package/*/*.mk))
