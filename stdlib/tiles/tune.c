/* tune.c: the tiles' launch-time knobs (mlk_desc.h MlkDevTune), one constant with the defaults.
 *
 * The runtime writes it by name after loading a module (runtime/gpu.c, from MLK_POLL_BACKOFF_NS
 * and MLK_STREAM_L2_AHEAD), so that a design choice can be measured on the GPU at several
 * settings in one run without a rebuild; mlkc keeps it visible (codegen.c), so the optimizer
 * cannot fold it into its initial value. Readers: the waits' back-off (sync.c), the weight
 * stream's L2 look-ahead (stream.c). In the host build (tests/tiles) it is an ordinary global. */
#include "mlk_tiles.h"

MLK_CONSTANT MlkDevTune mlk_dev_tune = MLK_DEV_TUNE_DEFAULTS;
