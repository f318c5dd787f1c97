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
      libgfortran5"
(cd .device/debs && apt-get download $pkgs >/dev/null 2>&1)
for f in .device/debs/*.deb; do dpkg -x "$f" .device/prefix; done
# Only what the build links against travels (the carry limit is 64 MiB).
find .device/prefix -name '*.a' -delete
rm -rf .device/prefix/usr/share/doc .device/prefix/usr/share/man \
    .device/prefix/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack*
du -sh .device/prefix
