# Two addons from one build: wsblk_native (production) and wsblk_native_test (the unit tests'
# hooks, loaded only by src/test-hooks.ts). The io_uring wrapper and errors are compiled once,
# into a static library both link.
{
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
    "cflags_cc": ["-std=c++20", "-O2", "-Wall", "-Wextra", "-fno-exceptions"],
    "cflags_cc!": ["-fno-rtti"]
  },
  "targets": [
    {
      "target_name": "wsblk_ring",
      "type": "static_library",
      "sources": ["csrc/errors.cc", "csrc/uring.cc", "csrc/event_ring.cc"]
    },
    {
      "target_name": "wsblk_native",
      "dependencies": ["wsblk_ring"],
      "sources": [
        "csrc/addon.cc", "csrc/fileops.cc", "csrc/ublk_control.cc", "csrc/ublk_queue.cc",
        "csrc/unix_listener.cc", "csrc/sockio.cc"
      ]
    },
    {
      "target_name": "wsblk_native_test",
      "dependencies": ["wsblk_ring"],
      "sources": ["csrc/test_hooks.cc"]
    }
  ]
}
