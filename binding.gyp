{
  "targets": [
    {
      "target_name": "taskmeter",
      "sources": [ "<!@(node -p \"require('./sources.json').common.join(' ')\")" ],
      "include_dirs": [ "<!(node -p \"require('node-addon-api').include_dir\")", "native" ],
      "defines": [ "NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS" ],
      "cflags_cc!": [ "-fno-exceptions" ],
      "cflags_cc": [ "-std=c++17", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter" ],
      "conditions": [
        [ "OS=='linux'", {
          "sources": [ "<!@(node -p \"require('./sources.json').linux.join(' ')\")" ],
          "libraries": [ "-ldl", "-lpthread" ]
        } ],
        [ "OS=='mac'", {
          "sources": [ "<!@(node -p \"require('./sources.json').darwin.join(' ')\")" ],
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
            "MACOSX_DEPLOYMENT_TARGET": "11.0"
          }
        } ],
        [ "OS=='win'", {
          "sources": [ "<!@(node -p \"require('./sources.json').win32.join(' ')\")" ],
          "libraries": [ "psapi.lib" ],
          "defines": [ "WIN32_LEAN_AND_MEAN", "NOMINMAX", "_WIN32_WINNT=0x0A00" ],
          "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": [ "/std:c++17" ] } }
        } ]
      ]
    },
    {
      "target_name": "taskmeter-exec",
      "conditions": [
        [ "OS!='win'", {
          "type": "executable",
          "sources": [ "<!@(node -p \"require('./sources.json').helper.join(' ')\")" ],
          "include_dirs": [ "native/helper" ],
          "cflags": [ "-Wall", "-Wextra", "-O2" ]
        }, {
          "type": "none"
        } ]
      ]
    }
  ]
}
