/* A stand-in for Windows' bcryptprimitives.dll, which Wine 8 lacks.
 *
 * Rust's standard library (1.78 and later) takes its randomness from ProcessPrng in
 * bcryptprimitives.dll; under Wine 8 every Rust .exe then fails at start-up. This stub forwards
 * ProcessPrng to the older SystemFunction036 (RtlGenRandom) of advapi32. CI (.ci/run) builds it
 * with MinGW and copies it into a fresh WINEPREFIX before running the Windows test suite; it is
 * never part of onlyone itself. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    /* RtlGenRandom takes a ULONG: fill larger requests in pieces. */
    while (length > 0) {
        ULONG piece = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, piece))
            return FALSE;
        data += piece;
        length -= piece;
    }
    return TRUE;
}
