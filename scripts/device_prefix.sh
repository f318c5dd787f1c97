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
      libcurl4-openssl-dev libcurl4 libxml2-dev libxml2 libicu72 libgumbo-dev libgumbo1
      libcmark-dev libcmark0.30.2 libgit2-dev libgit2-1.5 libhttp-parser2.9 libssh2-1
      libmbedtls14 libmbedx509-1 libmbedcrypto7 libcsv-dev libcsv3 libmicrohttpd-dev
      libmicrohttpd12 libgnutls30 libnghttp2-14 librtmp1 libpsl5 libbrotli1 libidn2-0
      libzstd1 zlib1g"
(cd .device/debs && apt-get download $pkgs >/dev/null 2>&1)
for f in .device/debs/*.deb; do dpkg -x "$f" .device/prefix; done
# Only what the build links against travels (the carry limit is 64 MiB).
find .device/prefix -name '*.a' -delete
rm -rf .device/prefix/usr/share/doc .device/prefix/usr/share/man \
    .device/prefix/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack*
du -sh .device/prefix
