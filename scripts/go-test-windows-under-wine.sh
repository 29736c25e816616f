#!/usr/bin/env bash
# Runs `go test` for GOOS=windows GOARCH=amd64 under Wine (Debian 12 bookworm,
# wine 8.0~repack-4, Go 1.26). Usage: scripts/go-test-windows-under-wine.sh [go test args...] (default ./...)
set -euo pipefail

WINE_ROOT=${WINE_ROOT:-/tmp/go-wine}
export WINEPREFIX=$WINE_ROOT/prefix
export WINEDEBUG=-all
# no mono/gecko install prompts, no desktop/menu entries written under $HOME
export WINEDLLOVERRIDES='mscoree,mshtml=;winemenubuilder.exe=d'
WINE=/usr/lib/wine/wine64
WINESERVER=/usr/lib/wine/wineserver   # /usr/bin/wine* need the extra `wine` package

# 1. packages: wine64 (64-bit loader + libs, no wine32/i386 needed) and the
#    mingw binutils, used only to link the 4 KB shim DLL below.
need=()
[ -x "$WINE" ] || need+=(wine64)
command -v x86_64-w64-mingw32-ld >/dev/null || need+=(binutils-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$WINE_ROOT/bin" "$WINE_ROOT/shim"

# 2. Go >= 1.22 runtime aborts at start ("fatal error: bcryptprimitives.dll not
#    found") because Wine 8.0 has no bcryptprimitives.dll. Provide one whose only
#    export, ProcessPrng, forwards to advapi32!SystemFunction036 (RtlGenRandom):
#    same x64 ABI (buffer, length) -> BOOL/BOOLEAN TRUE.
dll=$WINE_ROOT/shim/bcryptprimitives.dll
if [ ! -f "$dll" ]; then
  printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\nProcessPrng = advapi32.SystemFunction036\n' >"$WINE_ROOT/shim/bcp.def"
  printf '\t.text\n\t.globl DllMain\nDllMain:\n\tmovl $1, %%eax\n\tret\n' >"$WINE_ROOT/shim/dllmain.s"
  x86_64-w64-mingw32-as -o "$WINE_ROOT/shim/dllmain.o" "$WINE_ROOT/shim/dllmain.s"
  x86_64-w64-mingw32-ld --shared -e DllMain -o "$dll" "$WINE_ROOT/shim/dllmain.o" "$WINE_ROOT/shim/bcp.def"
fi

# 3. prefix (one-time, ~6 s, ~690 MB), then drop the shim into system32.
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  "$WINE" wineboot --init >/dev/null 2>&1 || true
  "$WINESERVER" -w
fi
cp "$dll" "$WINEPREFIX/drive_c/windows/system32/"

# 4. `go test` / `go run` use go_$GOOS_$GOARCH_exec from PATH when cross-compiling.
printf '#!/bin/sh\nexec %s "$@"\n' "$WINE" >"$WINE_ROOT/bin/go_windows_amd64_exec"
chmod +x "$WINE_ROOT/bin/go_windows_amd64_exec"
export PATH=$WINE_ROOT/bin:$PATH

# 5. Go 1.26 os.RemoveAll / os.Root.Remove (and so every t.TempDir cleanup) use
#    NtSetInformationFile(FileDispositionInformationEx); Wine 8.0 answers
#    STATUS_NOT_IMPLEMENTED, which Go does not treat as "fall back", so they fail
#    with "unlinkat ...: Invalid function.". Build the test binaries with an
#    overlaid copy of that one std file that also falls back on 0xC0000002.
src=$(go env GOROOT)/src/internal/syscall/windows/at_windows.go
sed 's|^\(\t\tSTATUS_NOT_SUPPORTED\):|\1, NTStatus(0xC0000002):|' "$src" >"$WINE_ROOT/at_windows.go"
if [ "$(grep -c 'NTStatus(0xC0000002)' "$WINE_ROOT/at_windows.go")" != 1 ]; then
  echo "go-test-windows-under-wine: at_windows.go overlay did not apply; check the Go version" >&2
  exit 1
fi
printf '{"Replace":{"%s":"%s"}}\n' "$src" "$WINE_ROOT/at_windows.go" >"$WINE_ROOT/overlay.json"

# 6. One persistent wineserver for all test binaries: ~0.1 s per binary instead
#    of ~1-3 s, and services.exe etc. start only once.
"$WINESERVER" -k 2>/dev/null || true
"$WINESERVER" -p
trap '"$WINESERVER" -k 2>/dev/null || true' EXIT
"$WINE" cmd.exe /c exit 0 >/dev/null 2>&1 || true

[ $# -gt 0 ] || set -- ./...
GOOS=windows GOARCH=amd64 go test -overlay="$WINE_ROOT/overlay.json" "$@"
