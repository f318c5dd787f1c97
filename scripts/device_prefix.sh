#!/usr/bin/env bash
# Prepares .device/prefix (git-ignored): the Debian packages of the C libraries twin links
# against, unpacked, for building twin on the GPU machine, whose image lacks them. On that
# machine: source scripts/device_env.sh, then cmake/make as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device/debs .device/prefix
pkgs="libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev
      libutf8proc2 libjansson-dev libjansson4 libsqlite3-dev libsqlite3-0 libstemmer-dev
      libstemmer0d libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0
      libgfortran5
      libcurl4-openssl-dev libcurl4 libxml2-dev libxml2 libicu-dev libicu72 libgumbo-dev libgumbo1
      libcmark-dev libcmark0.30.2 libgit2-dev libgit2-1.5 libhttp-parser2.9 libssh2-1
      libmbedtls14 libmbedx509-1 libmbedcrypto7 libcsv-dev libcsv3 libmicrohttpd-dev
      libmicrohttpd12 libgnutls30 libnghttp2-14 librtmp1 libpsl5 libbrotli1 libidn2-0
      libzstd1 zlib1g libssl-dev libssl3"
(cd .device/debs && apt-get download $pkgs >/dev/null 2>&1)
for f in .device/debs/*.deb; do dpkg -x "$f" .device/prefix; done
# The libraries those need in turn (libcurl's LDAP, gnutls' libunistring, ...): every
# NEEDED soname that the prefix lacks, found through this machine's installed packages,
# until nothing is missing; the C and C++ runtimes come with every image.
lib=.device/prefix/usr/lib/x86_64-linux-gnu
for _ in 1 2 3 4 5 6; do
    more=$(find .device/prefix -name '*.so*' -type f -exec readelf -d {} + 2>/dev/null |
        sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u | while read -r so; do
            case "$so" in libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|\
                libgcc_s.so*|libstdc++.so*|libresolv.so*) continue ;; esac
            [ -e "$lib/$so" ] || [ -e ".device/prefix/lib/x86_64-linux-gnu/$so" ] && continue
            dpkg -S "*/$so" 2>/dev/null | head -1 | cut -d: -f1
        done | sort -u)
    [ -z "$more" ] && break
    (cd .device/debs && apt-get download $more >/dev/null 2>&1)
    for p in $more; do for f in .device/debs/"${p}"_*.deb; do dpkg -x "$f" .device/prefix; done; done
done
# Only what the build links against travels (the carry limit is 64 MiB).
find .device/prefix -name '*.a' -delete
rm -rf .device/prefix/usr/share/doc .device/prefix/usr/share/man \
    .device/prefix/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack*
du -sh .device/prefix
# libmicrohttpd.pc names gnutls as a private requirement; twin links libmicrohttpd only
# dynamically, so a description without flags satisfies pkg-config (the real library is in
# the prefix for the loader).
cat >.device/prefix/usr/lib/x86_64-linux-gnu/pkgconfig/gnutls.pc <<'PC'
Name: gnutls
Description: stand-in for the device build (scripts/device_prefix.sh)
Version: 3.7.9
Libs:
Cflags:
PC
# The carry limit (64 MiB) is below the prefix's size: it travels as one xz archive, which
# device_env.sh unpacks on the GPU machine.
tar -C .device -cJf .device/prefix.tar.xz prefix
du -sh .device/prefix.tar.xz
