/*
 * A compressed migration tree stream (options/compress: zstd) is what a source node may
 * send us: the same target as mig_stream_fuzz.c, with the input decoded by
 * cta_mig_zio_decompress on its way to the receiver, and the same invariants.
 */
#define CTA_FUZZ_ZSTD 1
#include "mig_stream_fuzz.c"
