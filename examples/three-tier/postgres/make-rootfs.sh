#!/usr/bin/env bash
# Makes the root filesystem of the three-tier example's PostgreSQL image,
# reproducibly, from this machine's Debian packages: the files of
# `postgresql-15` that the server needs (binaries, modules, shared data),
# every shared library they load (found with ldd), the time zone data,
# `busybox-static` for the entrypoint script, util-linux's `setpriv` to drop
# root, and a two-user /etc/passwd.
#
#   examples/three-tier/postgres/make-rootfs.sh [OUT]
#
# writes OUT (default examples/three-tier/vendor/postgres-15.tar) and prints
# its sha256 — the digest `from = archive(...)` pins. Nothing is downloaded
# (hermetic); the tarball is deterministic (sorted entries, mtime 0, owner
# 0:0, numeric ids, no extended attributes), so the same package versions
# give the same digest on any machine. The versions are recorded inside, at
# /usr/share/glint/packages, and printed; a different digest means different
# packages. Needs: dpkg, ldd, GNU tar, sha256sum, and the Debian packages
# postgresql-15 and busybox-static installed.
set -euo pipefail
export LC_ALL=C
umask 022

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../vendor/postgres-15.tar}
pg=/usr/lib/postgresql/15
share=/usr/share/postgresql/15
packages="postgresql-15 busybox-static util-linux libc6 tzdata"

for p in $packages; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    echo "make-rootfs: Debian package $p is not installed (apt-get install $p)" >&2
    exit 2
  fi
done

root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT

# Copies host file $1 to the same path in the root, following symlinks.
copy() {
  local src=$1 dst=$root$1
  mkdir -p "$(dirname "$dst")"
  cp -L --preserve=mode "$src" "$dst"
}

# Usrmerge: /lib and /lib64 are links into /usr, as on the host.
mkdir -p "$root/usr/lib/x86_64-linux-gnu" "$root/usr/lib64" "$root/bin" "$root/etc" "$root/tmp"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"

# The server: postgres and initdb (which runs postgres to bootstrap), the
# loadable modules but the JIT (it would bring LLVM), the shared data.
copy "$pg/bin/postgres"
copy "$pg/bin/initdb"
copy "$pg/bin/pg_ctl"
# To drop root before starting the server (busybox's setpriv cannot).
copy /usr/bin/setpriv
find "$pg/lib" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' | sort | while read -r f; do copy "$f"; done
(cd / && find "${share#/}" -type f | sort) | while read -r f; do copy "/$f"; done
(cd / && find usr/share/zoneinfo -type f ! -path '*/right/*' | sort) | while read -r f; do copy "/$f"; done

# Every shared library any of them loads, at its real path (usrmerged).
libs=$(find "$root" -type f \( -path '*/bin/*' -o -name '*.so' \) -print0 |
  xargs -0 ldd 2>/dev/null | awk '/=> \// { print $3 } $1 ~ /^\/lib64\// { print $1 }' | sort -u)
for l in $libs; do
  # At the path the loader asks for (through the usrmerge links), with the
  # real file's content.
  case $l in
    /usr/*) dst=$l ;;
    *) dst=/usr$l ;;
  esac
  mkdir -p "$root$(dirname "$dst")"
  cp -L --preserve=mode "$l" "$root$dst"
done

# A shell and the few tools the entrypoint uses.
cp --preserve=mode /bin/busybox "$root/bin/busybox"
for a in sh chown chmod mkdir mv rm cat; do ln -s busybox "$root/bin/$a"; done
install -m 0755 "$here/entrypoint.sh" "$root/usr/local/bin/glint-postgres" 2>/dev/null ||
  { mkdir -p "$root/usr/local/bin"; install -m 0755 "$here/entrypoint.sh" "$root/usr/local/bin/glint-postgres"; }

printf 'root:x:0:0:root:/:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\npostgres:x:999:\n' >"$root/etc/group"
mkdir -p "$root/var/lib/postgresql/data" "$root/usr/share/glint"
chmod 1777 "$root/tmp"
for p in $packages postgresql-common; do
  dpkg-query -W -f='${Package} ${Version}\n' "$p" 2>/dev/null || true
done | sort >"$root/usr/share/glint/packages"

mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  --no-acls --no-xattrs --no-selinux -cf "$out.tmp" -C "$root" .
mv "$out.tmp" "$out"
sha256sum "$out" | awk '{ print $1 }' >"$out.sha256"
echo "packages:" >&2
sed 's/^/  /' "$root/usr/share/glint/packages" >&2
echo "$(du -h "$out" | cut -f1) $out" >&2
echo "sha256:$(cat "$out.sha256")"
