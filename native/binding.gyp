{
  "targets": [
    {
      "target_name": "wsblk_native",
      "sources": [
        "csrc/addon.cc", "csrc/fileops.cc", "csrc/errors.cc", "csrc/uring.cc",
        "csrc/event_ring.cc", "csrc/ublk_control.cc", "csrc/ublk_queue.cc", "csrc/test_hooks.cc",
        "csrc/unix_listener.cc", "csrc/sockio.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++20", "-O2", "-Wall", "-Wextra", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"]
    }
  ]
}
