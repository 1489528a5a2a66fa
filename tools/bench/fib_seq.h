/* fib_seq.h - the sequential fib baseline (fib_seq.c). */
#ifndef MOIRAI_BENCH_FIB_SEQ_H
#define MOIRAI_BENCH_FIB_SEQ_H

#ifdef __cplusplus
extern "C" {
#endif

long fib_seq(int n);

#ifdef __cplusplus
}
#endif

#endif
