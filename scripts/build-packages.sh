#!/bin/sh
# build-packages.sh: build the kcare agent and eportal packages from this
# tree: a .deb of each (dpkg-deb), and an .rpm of each when rpmbuild is
# installed.
#
#   VERSION=0.2.0 scripts/build-packages.sh [OUTDIR]     (default OUTDIR: dist)
#
# VERSION defaults to kcarectl's version. KEYRING, a directory of *.pub
# or *.asc keys, ships them in /etc/sysconfig/kcare/keys. RPM=0 skips the
# .rpm. The agent package holds kcarectl, kcare-uname, the units and
# kcare-boot, the default kcare.conf, the keyring, the scanner library
# and the man pages; eportal's holds the binary, its unit, its defaults
# and makes the eportal user and /var/lib/eportal when installed.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
OUT=${1:-dist}
case $OUT in /*) ;; *) OUT=$top/$OUT ;; esac
VERSION=${VERSION:-$(sed -n 's/^var Version = "\(.*\)"$/\1/p' cmd/kcarectl/cli/cli.go)}
RELEASE=${RELEASE:-1}
ARCH=amd64
MAINTAINER=${MAINTAINER:-kcare maintainers <kcare@example.com>}
KEYRING=${KEYRING:-}
RPM=${RPM:-1}
pkg=deploy/packaging

case $VERSION in
[0-9]*) ;;
*) echo "build-packages.sh: VERSION $VERSION must start with a digit" >&2; exit 1 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/kcare-pkg.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT" "$work/bin"

echo "build-packages.sh: building version $VERSION" >&2
GOFLAGS= CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH go build -trimpath \
	-ldflags "-s -w -X github.com/kcare/kcare/cmd/kcarectl/cli.Version=$VERSION" \
	-buildmode=pie -o "$work/bin/" ./cmd/kcarectl ./cmd/kcare-uname ./cmd/eportal
make -s -C scanner OUT="$work/bin/libkcare_scanner.so" CFLAGS="-O2 -g0" >&2
strip --strip-unneeded "$work/bin/libkcare_scanner.so"

# stage_kcare DIR UNITDIR: the agent's files under DIR.
stage_kcare() {
	d=$1 unitdir=$2
	install -D -m 0755 "$work/bin/kcarectl" "$d/usr/bin/kcarectl"
	install -D -m 0755 "$work/bin/kcare-uname" "$d/usr/bin/kcare-uname"
	install -D -m 0755 $pkg/kcare-scanner-interface "$d/usr/bin/kcare-scanner-interface"
	install -D -m 0644 "$work/bin/libkcare_scanner.so" "$d/usr/lib/kcare/libkcare_scanner.so"
	install -D -m 0755 deploy/systemd/kcare-boot "$d/usr/libexec/kcare/kcare-boot"
	for u in kcare.service kcare-boot-ok.service kcare-auto-update.service kcare-auto-update.timer kcare-poll.service kcare-poll.timer; do
		install -D -m 0644 "deploy/systemd/$u" "$d$unitdir/$u"
	done
	install -D -m 0644 $pkg/kcare.conf "$d/etc/sysconfig/kcare/kcare.conf"
	mkdir -p "$d/etc/sysconfig/kcare/keys"
	if [ -n "$KEYRING" ]; then
		for k in "$KEYRING"/*.pub "$KEYRING"/*.asc; do
			[ -e "$k" ] && install -m 0644 "$k" "$d/etc/sysconfig/kcare/keys/"
		done
	fi
	install -D -m 0644 $pkg/kcarectl.8 "$d/usr/share/man/man8/kcarectl.8"
	install -D -m 0644 $pkg/kcare-uname.1 "$d/usr/share/man/man1/kcare-uname.1"
	gzip -9n "$d/usr/share/man/man8/kcarectl.8" "$d/usr/share/man/man1/kcare-uname.1"
}

# stage_eportal DIR UNITDIR ENVFILE
stage_eportal() {
	d=$1 unitdir=$2 envfile=$3
	install -D -m 0755 "$work/bin/eportal" "$d/usr/bin/eportal"
	# ePortal's name for its admin command.
	ln -s eportal "$d/usr/bin/kc.eportal"
	install -D -m 0644 $pkg/eportal.service "$d$unitdir/eportal.service"
	install -D -m 0644 $pkg/eportal.default "$d$envfile"
}

# changelog NAME: a Debian changelog for this build.
changelog() {
	printf '%s (%s-%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
		"$1" "$VERSION" "$RELEASE" "$VERSION" "$MAINTAINER" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
}

# deb NAME DIR DEPENDS DESCRIPTION: control files, conffiles, build.
deb() {
	name=$1 d=$2 depends=$3 desc=$4
	install -D -m 0644 $pkg/copyright "$d/usr/share/doc/$name/copyright"
	changelog "$name" | gzip -9n > "$d/usr/share/doc/$name/changelog.Debian.gz"
	chmod 0644 "$d/usr/share/doc/$name/changelog.Debian.gz"
	mkdir -p "$d/DEBIAN"
	for s in postinst prerm postrm; do
		install -m 0755 "$pkg/deb/$name/$s" "$d/DEBIAN/$s"
	done
	(cd "$d" && find etc -type f 2>/dev/null | sort | sed 's|^|/|') > "$d/DEBIAN/conffiles"
	[ -s "$d/DEBIAN/conffiles" ] || rm -f "$d/DEBIAN/conffiles"
	size=$(du -sk --exclude=DEBIAN "$d" | cut -f1)
	{
		echo "Package: $name"
		echo "Version: $VERSION-$RELEASE"
		echo "Architecture: $ARCH"
		echo "Maintainer: $MAINTAINER"
		echo "Installed-Size: $size"
		[ -n "$depends" ] && echo "Depends: $depends"
		echo "Section: admin"
		echo "Priority: optional"
		echo "Homepage: https://github.com/kcare/kcare"
		echo "Description: $desc"
	} > "$d/DEBIAN/control"
	cat "$pkg/deb/$name/description" >> "$d/DEBIAN/control"
	dpkg-deb --root-owner-group -Zxz --build "$d" "$OUT/${name}_$VERSION-${RELEASE}_$ARCH.deb" >&2
}

d=$work/deb-kcare
stage_kcare "$d" /lib/systemd/system
deb kcare "$d" "libc6 (>= 2.34), init-system-helpers (>= 1.52)" "live kernel patching agent"

d=$work/deb-eportal
stage_eportal "$d" /lib/systemd/system /etc/default/eportal
deb eportal "$d" "adduser, init-system-helpers (>= 1.52)" "kcare patch server and on-premises portal"

if [ "$RPM" = 1 ] && command -v rpmbuild >/dev/null; then
	rpmversion=$(echo "$VERSION" | tr '-' '_')
	for name in kcare eportal; do
		d=$work/rpm-$name
		if [ $name = kcare ]; then
			stage_kcare "$d" /usr/lib/systemd/system
		else
			stage_eportal "$d" /usr/lib/systemd/system /etc/sysconfig/eportal
		fi
		sed -e "s/@VERSION@/$rpmversion/" -e "s/@RELEASE@/$RELEASE/" "$pkg/rpm/$name.spec" > "$work/$name.spec"
		# The shipped keys, if any, end the agent's %files.
		if [ $name = kcare ]; then
			(cd "$d" && find etc/sysconfig/kcare/keys -type f | sort | sed 's|^|%config(noreplace) /|') >> "$work/$name.spec"
		fi
		rpmbuild -bb --quiet --define "_topdir $work/rpmbuild" --define "_rpmdir $OUT" \
			--define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
			--define "stagedir $d" --target x86_64 "$work/$name.spec" >&2
	done
fi
ls "$OUT"
