// Field-by-field layout of the C argument structs, exported by every kernel
// object that takes one, so the Python side checks its ctypes mirror once, at
// load time (cudadent42.jit.check_abi). A size check alone lets two swapped
// int64 fields through; offsets and sizes per named field do not.
//
// A struct is declared from one X-macro list, X(type, name) per field, so the
// struct and its exported description cannot disagree:
//   #define MY_ARGS_FIELDS(X) X(const void*, q) X(int64_t, q_row_stride)
//   extern "C" { struct my_args { MY_ARGS_FIELDS(CD42_ABI_DECLARE) }; }
//   CD42_ABI_DEFINE_EXPORT(my_args, MY_ARGS_FIELDS)
// exports `int cd42_abi_fields_my_args(char* out, int capacity)`, which writes
// "my_args:0:<sizeof>;q:0:8;q_row_stride:8:8" (name:offset:size, ';'-joined,
// NUL-terminated, cut to `capacity`) and returns the full length.
//
// Host-only and CUDA-free: a CPU test compiles the argument headers with the
// host compiler alone.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>

namespace cd42::abi {

struct Field {
  const char* name;
  std::size_t offset;
  std::size_t size;
};

inline int describe(const char* struct_name, std::size_t struct_size, const Field* fields, std::size_t count,
                    char* out, int capacity) {
  std::string text = std::string(struct_name) + ":0:" + std::to_string(struct_size);
  for (std::size_t i = 0; i < count; ++i)
    text += ";" + std::string(fields[i].name) + ":" + std::to_string(fields[i].offset) + ":" +
            std::to_string(fields[i].size);
  if (out && capacity > 0) {
    std::size_t n = text.size() < std::size_t(capacity) ? text.size() : std::size_t(capacity) - 1;
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
  }
  return int(text.size());
}

}  // namespace cd42::abi

#define CD42_ABI_DECLARE(type, name) type name;
#define CD42_ABI_FIELD(type, name) cd42::abi::Field{#name, offsetof(AbiStruct, name), sizeof(type)},

// `inline` + `used` keeps the header includable from several files of one
// program and still emits the unreferenced function. No function-local
// statics: in an inline function they become GNU unique symbols, which the
// dynamic linker shares across every loaded kernel object (RTLD_LOCAL or not),
// so one object could answer with another's layout. Host code only: the
// kernels' SASS is unchanged.
#define CD42_ABI_DEFINE_EXPORT(Struct, FIELDS)                                                          \
  extern "C" inline __attribute__((visibility("default"), used)) int cd42_abi_fields_##Struct(char* out,  \
                                                                                         int capacity) { \
    using AbiStruct = Struct;                                                                           \
    const cd42::abi::Field fields[] = {FIELDS(CD42_ABI_FIELD)};                                         \
    return cd42::abi::describe(#Struct, sizeof(Struct), fields, sizeof fields / sizeof fields[0], out,  \
                               capacity);                                                               \
  }
