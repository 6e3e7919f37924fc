"""cffi builder (API mode) for ``libmshare._atomic_c``, the binding behind :mod:`libmshare.atomic`.

Run by the project's build (``setup.py``: ``cffi_modules``); ``python
libmshare/_atomic_build.py`` builds it in place by hand.  Each function is one GCC
``__atomic`` builtin on an aligned word at ``base + off``, sequentially consistent;
all checking (bounds, alignment, writability) is done before the call, in Python.
"""

from __future__ import annotations

from cffi import FFI  # type: ignore[import-untyped,unused-ignore]

CDEF = """
uint32_t lm_load32(const char *base, size_t off);
uint64_t lm_load64(const char *base, size_t off);
void lm_store32(char *base, size_t off, uint32_t v);
void lm_store64(char *base, size_t off, uint64_t v);
uint32_t lm_exchange32(char *base, size_t off, uint32_t v);
uint64_t lm_exchange64(char *base, size_t off, uint64_t v);
uint32_t lm_cas32(char *base, size_t off, uint32_t expected, uint32_t desired);
uint64_t lm_cas64(char *base, size_t off, uint64_t expected, uint64_t desired);
uint32_t lm_fetch_add32(char *base, size_t off, uint32_t v);
uint64_t lm_fetch_add64(char *base, size_t off, uint64_t v);
void lm_fence(void);
"""

SOURCE = r"""
#include <stdint.h>
#include <stddef.h>

#define ORDER __ATOMIC_SEQ_CST
#define W32(b, o) ((uint32_t *)(void *)((b) + (o)))
#define W64(b, o) ((uint64_t *)(void *)((b) + (o)))

uint32_t lm_load32(const char *b, size_t o) { return __atomic_load_n((const uint32_t *)(const void *)(b + o), ORDER); }
uint64_t lm_load64(const char *b, size_t o) { return __atomic_load_n((const uint64_t *)(const void *)(b + o), ORDER); }
void lm_store32(char *b, size_t o, uint32_t v) { __atomic_store_n(W32(b, o), v, ORDER); }
void lm_store64(char *b, size_t o, uint64_t v) { __atomic_store_n(W64(b, o), v, ORDER); }
uint32_t lm_exchange32(char *b, size_t o, uint32_t v) { return __atomic_exchange_n(W32(b, o), v, ORDER); }
uint64_t lm_exchange64(char *b, size_t o, uint64_t v) { return __atomic_exchange_n(W64(b, o), v, ORDER); }
/* Returns the value found: the swap happened if and only if it equals expected. */
uint32_t lm_cas32(char *b, size_t o, uint32_t e, uint32_t d)
{
    __atomic_compare_exchange_n(W32(b, o), &e, d, 0, ORDER, ORDER);
    return e;
}
uint64_t lm_cas64(char *b, size_t o, uint64_t e, uint64_t d)
{
    __atomic_compare_exchange_n(W64(b, o), &e, d, 0, ORDER, ORDER);
    return e;
}
uint32_t lm_fetch_add32(char *b, size_t o, uint32_t v) { return __atomic_fetch_add(W32(b, o), v, ORDER); }
uint64_t lm_fetch_add64(char *b, size_t o, uint64_t v) { return __atomic_fetch_add(W64(b, o), v, ORDER); }
void lm_fence(void) { __atomic_thread_fence(ORDER); }
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("libmshare._atomic_c", SOURCE, extra_compile_args=["-O2", "-Wall"])

if __name__ == "__main__":
    import os

    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ffibuilder.compile(verbose=True)
