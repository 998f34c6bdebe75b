/* floor.h: the benchmarks' ratio to the bandwidth floor, from a read rate measured on the GPU
 * they run on (never a constant: an H200 reads ~4.4 TB/s, an H100 ~3.0).
 *
 * The rate comes from MLK_READ_GBPS (GB/s of streaming reads, as bench/decode/floor.py measures
 * it; bench/decode/run.sh measures it and reports the ratio itself). Without it, or with a value
 * that is not a positive number, the benchmark prints the bytes and says what it needs.
 */
#ifndef MLK_BENCH_FLOOR_H
#define MLK_BENCH_FLOOR_H

#include <stdio.h>
#include <stdlib.h>

/* Prints the floor line of a step that must move `bytes` and took `median_ms`. */
static inline void bench_print_floor(double bytes, double median_ms) {
  const char *s = getenv("MLK_READ_GBPS");
  char *end = NULL;
  double gbps = s ? strtod(s, &end) : 0.0;
  if (!s || end == s || *end != '\0' || !(gbps > 0.0)) {
    if (s)
      printf("floor: %.4f GB to read; no ratio: MLK_READ_GBPS='%s' is not a rate in GB/s\n",
             bytes / 1e9, s);
    else
      printf("floor: %.4f GB to read; no ratio: set MLK_READ_GBPS to the read rate measured on "
             "this GPU in GB/s (python3 bench/decode/floor.py measures it)\n",
             bytes / 1e9);
    return;
  }
  double floor_ms = bytes / (gbps * 1e9) * 1e3;
  printf("floor: %.4f GB / %.0f GB/s (MLK_READ_GBPS) = %.4f ms; median / floor = %.2fx (%.0f%% of "
         "the read rate)\n",
         bytes / 1e9, gbps, floor_ms, median_ms / floor_ms, 100 * floor_ms / median_ms);
}

#endif /* MLK_BENCH_FLOOR_H */
