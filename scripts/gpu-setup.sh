#!/usr/bin/env bash
# Puts SwiftShader's Vulkan ICD (libvk_swiftshader.so, vk_swiftshader_icd.json, libvulkan.so.1) next
# to node_modules/gl/build/Release/libGLESv2.so, where gl@9's prebuilt ANGLE looks for it when
# ANGLE_DEFAULT_PLATFORM=swiftshader. The files come from Debian's chromium-common package (the same
# files `apt-get install chromium` puts in /usr/lib/chromium): taken from /usr/lib/chromium when
# chromium is installed, else the .deb is downloaded with `apt-get download` and unpacked into
# .cache/ (no dependencies installed; about 30 MB, a few seconds).
#
#   bash scripts/gpu-setup.sh          # set up, then print the renderer the gpujs backend sees
#   bash scripts/gpu-setup.sh --check  # only print the renderer (exit 1 when there is no GPU path)
set -euo pipefail
cd "$(dirname "$0")/.."

rel=node_modules/gl/build/Release
files=(libvk_swiftshader.so vk_swiftshader_icd.json libvulkan.so.1)

if [[ "${1:-}" != "--check" ]]; then
  if [[ ! -f "$rel/libGLESv2.so" ]]; then
    echo "gpu-setup: $rel/libGLESv2.so is missing: gl@9 did not install (npm ci drops it when its build fails); nothing to set up" >&2
    exit 1
  fi
  src=""
  if [[ -f /usr/lib/chromium/libvk_swiftshader.so ]]; then
    src=/usr/lib/chromium
  else
    cache=.cache/gpu-setup
    if [[ ! -f "$cache/x/usr/lib/chromium/libvk_swiftshader.so" ]]; then
      mkdir -p "$cache"
      rm -rf "$cache/x" "$cache"/*.deb
      if ! command -v apt-get >/dev/null; then
        echo "gpu-setup: no apt-get and no /usr/lib/chromium: put ${files[*]} from a Chromium build into $rel by hand" >&2
        exit 1
      fi
      # apt-get download writes into the current folder; _apt cannot write to every folder, so as root it warns and goes on
      (cd "$cache" && apt-get download chromium-common 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
      deb=$(ls "$cache"/chromium-common_*.deb 2>/dev/null | head -1)
      if [[ -z "$deb" ]]; then
        echo "gpu-setup: apt-get download chromium-common failed (run apt-get update first?)" >&2
        exit 1
      fi
      dpkg-deb -x "$deb" "$cache/x"
      rm -f "$deb"
    fi
    src="$cache/x/usr/lib/chromium"
  fi
  for f in "${files[@]}"; do
    cp -f "$src/$f" "$rel/$f"
  done
  echo "gpu-setup: SwiftShader ICD from $src copied into $rel"
fi

# what the backend sees (its own probe; names the renderer or the cause of failure)
node --import tsx -e '
const { probeGpujs } = await import("./engine/backend/gpujs/env.ts");
const p = await probeGpujs();
if (p.ok) { console.log("gpu-setup: gpujs runs on " + p.description); }
else { console.error("gpu-setup: no GPU path: " + p.reason); process.exit(1); }
'
