#!/bin/sh
# Installs what kcare's build, demo and tests need on a Debian 12 machine.
# (dwarves: pahole, which Debian's 6.12 kernels need to build modules.)
# Go (1.26 or newer) must already be on PATH.
set -eu

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup-debian.sh: run as root (sudo $0)" >&2
		exit 1
	fi
}
need_root

if ! command -v go >/dev/null 2>&1; then
	echo "setup-debian.sh: Go is not on PATH; install Go 1.26 or newer first" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Wait for another apt or dpkg (an unattended upgrade) rather than fail.
apt_opts="-o DPkg::Lock::Timeout=600"
apt-get $apt_opts update -q
apt-get $apt_opts install -y -q --no-install-recommends \
	make gcc libc6-dev build-essential libelf-dev libssl-dev bc flex bison patch \
	qemu-system-x86 busybox-static kmod cpio xz-utils zstd \
	gnupg ca-certificates postgresql prometheus nagios4-core zabbix-agent tinyproxy rpm chromium faketime \
	debootstrap e2fsprogs openssh-client dpkg-dev lintian ansible haproxy \
	dwarves

mkdir -p /var/cache/kcare-test
