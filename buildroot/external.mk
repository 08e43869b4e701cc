################################################################################
#
# SMS OS: the workspace's daemons come from one git repository (this one),
# fetched with the git site method so that Buildroot's cargo download
# post-process vendors their crates into the download directory: a later
# build works offline. The version is pinned to a commit: by default the
# one this external tree is checked out at (never a moving branch, so the
# sources and the vendored crates of a build are fixed); SMS_VERSION=<tag
# or commit> builds another.
#
################################################################################

SMS_SITE ?= $(realpath $(BR2_EXTERNAL_SMS_PATH)/..)
SMS_VERSION ?= $(shell git -C $(SMS_SITE) rev-parse --verify -q HEAD)
SMS_SITE_METHOD = git

ifeq ($(SMS_VERSION),)
$(error SMS_VERSION: $(SMS_SITE) is not a git checkout; set SMS_VERSION to a tag or commit)
endif

include $(sort $(wildcard $(BR2_EXTERNAL_SMS_PATH)/package/*/*.mk))
