# Sourced on the GPU machine: points pkg-config, the compiler and the loader at .device/prefix
# (made by scripts/device_prefix.sh).
p="$(pwd)/.device/prefix"
# Carried as .device/prefix.tar.xz (scripts/device_prefix.sh): unpacked once per machine.
if [ ! -d "$p" ] && [ -f "$p.tar.xz" ]; then
    tar -C "$(pwd)/.device" -xJf "$p.tar.xz"
fi
export PKG_CONFIG_SYSROOT_DIR="$p"
b="$p/usr/lib/x86_64-linux-gnu/openblas-pthread"
export PKG_CONFIG_PATH="$p/usr/lib/x86_64-linux-gnu/pkgconfig:$b/pkgconfig:$p/usr/share/pkgconfig"
export LIBRARY_PATH="$p/usr/lib/x86_64-linux-gnu:$b${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$p/usr/lib/x86_64-linux-gnu:$b${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CPATH="$p/usr/include${CPATH:+:$CPATH}"
export CMAKE_PREFIX_PATH="$p/usr"
# The machine's own curl must not load the prefix's libcurl (older than the one it was built
# for): a wrapper first in PATH runs it with the system's loader path, exec'ing it so that
# its process id stays the one a script started (and may kill).
bin="$(pwd)/.device/bin"
real_curl=$(command -v curl || true)
if [ -n "$real_curl" ] && [ "$real_curl" != "$bin/curl" ]; then
    mkdir -p "$bin"
    printf '#!/bin/sh\nLD_LIBRARY_PATH= exec %s "$@"\n' "$real_curl" > "$bin/curl"
    chmod +x "$bin/curl"
    export PATH="$bin:$PATH"
fi
