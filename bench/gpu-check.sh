#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU and no network: finds the GL path gpu.js gets through
# gl@9's ANGLE, prints the renderer, runs the gpujs test suites (CI=true: nothing skipped) and
# bench/gpujs.ts. Uses only what `npm ci` left in node_modules (carried with the tree) and the
# driver's own files; it downloads nothing.
#
#   bash bench/gpu-check.sh            # parity, contract, refusal and golden suites, the benchmark, the
#                                      # world step's time per kernel (CDIFF_GPUJS_PROFILE=1), and the
#                                      # quick benchmark with packed textures (CDIFF_GPUJS_PACK=1)
#   bash bench/gpu-check.sh --quick    # parity suite and the quick benchmark only
#   bash bench/gpu-check.sh --require-gpu   # also exit 4 when only the software renderer comes up
#   GPU_CHECK_PLATFORM=vulkan bash bench/gpu-check.sh   # try only this ANGLE platform
#
# ANGLE platforms tried, first hardware one wins (ANGLE_DEFAULT_PLATFORM, read by gl's ANGLE):
#   vulkan  the Vulkan loader next to ANGLE with the NVIDIA ICD (VK_ICD_FILENAMES set to
#           nvidia_icd.json from /usr/share/vulkan/icd.d or /etc/vulkan/icd.d when present); needs the
#           driver's graphics libraries (libGLX_nvidia.so.0; in containers NVIDIA_DRIVER_CAPABILITIES
#           must include "graphics")
#   gles    ANGLE on the system EGL (libEGL.so.1 through glvnd, libEGL_nvidia.so.0); this ANGLE build
#           opens the default X display for it, so it needs a DISPLAY (e.g. under xvfb-run)
#   gl      ANGLE on desktop GL through GLX (only with a DISPLAY)
#   swiftshader  the software fallback (SwiftShader's ICD next to ANGLE, as scripts/gpu-setup.sh leaves it)
# Exit status: 0 all passed; 1 a test suite failed (parity failures included); 2 the benchmark failed;
# 3 no GL path at all; 4 (--require-gpu) only the software renderer came up.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
require_gpu=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --require-gpu) require_gpu=1 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $a" >&2; exit 64 ;;
  esac
done

export CI=true
unset CDIFF_BACKEND
rel=node_modules/gl/build/Release
tsx=node_modules/tsx/dist/loader.mjs
say() { printf '%s\n' "gpu-check: $*"; }
banner() {
  local bar
  bar=$(printf '!%.0s' $(seq 1 100))
  printf '%s\n' "$bar"
  for l in "$@"; do printf '!! %s\n' "$l"; done
  printf '%s\n' "$bar"
}

# ---- what is here
say "$(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), node $(node -v), $(nproc) cores"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu-check: nvidia-smi: /'
else
  say "nvidia-smi: not found"
fi
say "NVIDIA_DRIVER_CAPABILITIES=${NVIDIA_DRIVER_CAPABILITIES:-(unset)} DISPLAY=${DISPLAY:-(unset)}"
missing=()
for f in "$rel/libGLESv2.so" "$rel/libEGL.so" "$rel/webgl.node" node_modules/gpu.js/package.json "$tsx" node_modules/uvu/bin.js; do
  [[ -e "$f" ]] || missing+=("$f")
done
if ((${#missing[@]})); then
  banner "gpu-check: node_modules is incomplete: ${missing[*]}" "run npm ci where there is network (gl@9 installs its prebuilt ANGLE) and carry node_modules with the tree"
  exit 3
fi

nvidia_icd=""
for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
  for j in "$d"/nvidia_icd*.json; do
    [[ -f "$j" ]] && { nvidia_icd=$j; break 2; }
  done
done
if [[ -n "$nvidia_icd" ]]; then
  lib=$(sed -n 's/.*"library_path"[^"]*"\([^"]*\)".*/\1/p' "$nvidia_icd" | head -1)
  found=$( { ldconfig -p 2>/dev/null | grep -F "${lib##*/}" | head -1; } || true)
  say "NVIDIA Vulkan ICD: $nvidia_icd (library ${lib:-?}: ${found:+found}${found:-NOT found by ldconfig})"
else
  say "NVIDIA Vulkan ICD: none in /usr/share/vulkan/icd.d, /etc/vulkan/icd.d (driver without graphics libraries?)"
fi
for l in libEGL_nvidia.so.0 libGLX_nvidia.so.0 libEGL.so.1; do
  if ldconfig -p 2>/dev/null | grep -qF "$l"; then say "$l: present"; else say "$l: absent"; fi
done
ls "$rel"/libvk_swiftshader.so "$rel"/vk_swiftshader_icd.json "$rel"/libvulkan.so.1 >/dev/null 2>&1 \
  && say "SwiftShader ICD next to ANGLE: yes" || say "SwiftShader ICD next to ANGLE: no (bash scripts/gpu-setup.sh puts it there; needs apt or chromium)"

# ---- probe one platform in a child process: prints "ok|software|description" or "fail|reason"
probe() {
  timeout 180 node --import tsx -e '
    const { probeGpujs } = await import("./engine/backend/gpujs/env.ts");
    const p = probeGpujs();
    console.log(p.ok ? `RESULT ok|${p.software ? "software" : "hardware"}|${p.description}` : `RESULT fail|${p.reason}`);
    process.exit(0);
  ' 2>&1 | tee -a "$probe_log" | grep '^RESULT ' | tail -1 | sed 's/^RESULT //'
}
probe_log=$(mktemp)
trap 'rm -f "$probe_log"' EXIT

try_platform() {
  local plat=$1
  unset VK_ICD_FILENAMES VK_DRIVER_FILES ANGLE_PREFERRED_DEVICE
  export ANGLE_DEFAULT_PLATFORM=$plat
  if [[ "$plat" == vulkan ]]; then
    export ANGLE_PREFERRED_DEVICE=nvidia
    if [[ -n "$nvidia_icd" ]]; then export VK_ICD_FILENAMES=$nvidia_icd VK_DRIVER_FILES=$nvidia_icd; fi
  fi
  : >"$probe_log"
  local r
  r=$(probe)
  [[ -z "$r" ]] && r="fail|the probe crashed or timed out: $(tail -3 "$probe_log" | tr '\n' ' ')"
  printf '%s' "$r"
}

if [[ -n "${GPU_CHECK_PLATFORM:-}" ]]; then
  platforms=("$GPU_CHECK_PLATFORM")
else
  platforms=(vulkan gles)
  [[ -n "${DISPLAY:-}" ]] && platforms+=(gl)
  platforms+=(swiftshader)
fi
chosen=""
chosen_desc=""
software=0
for plat in "${platforms[@]}"; do
  r=$(try_platform "$plat")
  case "$r" in
    ok\|hardware\|*)
      chosen=$plat; chosen_desc=${r#ok|hardware|}; software=0
      say "ANGLE_DEFAULT_PLATFORM=$plat: hardware renderer: $chosen_desc"
      break ;;
    ok\|software\|*)
      say "ANGLE_DEFAULT_PLATFORM=$plat: software renderer only: ${r#ok|software|}"
      if [[ -z "$chosen" ]]; then chosen=$plat; chosen_desc=${r#ok|software|}; software=1; fi
      [[ "$plat" == swiftshader ]] && break ;;
    *)
      say "ANGLE_DEFAULT_PLATFORM=$plat: no context: ${r#fail|}"
      grep -m2 -E "Display::initialize error|not supported|Could not" "$probe_log" | sed 's/^/gpu-check:     ANGLE: /' ;;
  esac
done
if [[ -z "$chosen" ]]; then
  banner "gpu-check: no GL path at all (tried ${platforms[*]}); nothing was run"
  exit 3
fi
unset VK_ICD_FILENAMES VK_DRIVER_FILES ANGLE_PREFERRED_DEVICE
export ANGLE_DEFAULT_PLATFORM=$chosen
if [[ "$chosen" == vulkan ]]; then
  export ANGLE_PREFERRED_DEVICE=nvidia
  [[ -n "$nvidia_icd" ]] && export VK_ICD_FILENAMES=$nvidia_icd VK_DRIVER_FILES=$nvidia_icd
fi
if ((software)); then
  banner "FALLBACK: NO HARDWARE GPU. gpu.js runs on the SOFTWARE renderer:" "  $chosen_desc" \
    "the parity results below hold for SwiftShader, not for a GPU driver; the timings are not GPU speed" \
    "(see the lines above for why vulkan/gles did not come up)"
else
  say "renderer: $chosen_desc"
fi

# ---- the suites
status=0
if ((quick)); then
  suites='parity\.test\.ts$'
else
  suites='(parity|contract|refuse|golden)\.test\.ts$'
fi
say "running test/gpujs ($suites) with CI=true, ANGLE_DEFAULT_PLATFORM=$ANGLE_DEFAULT_PLATFORM"
t0=$(date +%s)
node node_modules/uvu/bin.js -r tsx test/gpujs "$suites"
rc=$?
say "test suites: exit $rc in $(($(date +%s) - t0)) s"
((rc != 0)) && status=1

# ---- the benchmark
bargs=()
((quick)) && bargs=(--quick)
say "running bench/gpujs.ts ${bargs[*]:-}"
t0=$(date +%s)
node --import tsx bench/gpujs.ts "${bargs[@]}"
rc=$?
say "benchmark: exit $rc in $(($(date +%s) - t0)) s"
((rc != 0 && status == 0)) && status=2
if ((!quick)); then
  # where the GPU's time goes: the world step again, each kernel waited for and timed by name
  say "running CDIFF_GPUJS_PROFILE=1 bench/gpujs.ts --only world (time per kernel)"
  CDIFF_GPUJS_PROFILE=1 node --import tsx bench/gpujs.ts --only "world training step"
  rc=$?
  ((rc != 0 && status == 0)) && status=2
  # packed textures (four values per texel, a quarter of the memory): their speed on this GPU
  say "running CDIFF_GPUJS_PACK=1 bench/gpujs.ts --quick (packed textures)"
  CDIFF_GPUJS_PACK=1 node --import tsx bench/gpujs.ts --quick
  rc=$?
  ((rc != 0 && status == 0)) && status=2
fi

if ((software)); then
  banner "REMINDER: these results are from the SOFTWARE renderer ($chosen), not a GPU"
  ((require_gpu && status == 0)) && status=4
fi
say "renderer: $chosen_desc"
say "exit $status ($( ((status == 0)) && echo "all passed" || echo "see above"))"
exit $status
