/*
 * A compressed have stream (the source asked for one: it compresses its streams) is what
 * a destination node may send us: the same target as mig_have_fuzz.c, with the input
 * decoded by cta_mig_zio_decompress on its way to the sender, and the same invariants.
 */
#define CTA_FUZZ_ZSTD 1
#include "mig_have_fuzz.c"
