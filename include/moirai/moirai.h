/*
 * moirai/moirai.h - the whole public API of Moirai, a Linux concurrency
 * runtime: work-stealing workers for CPU-parallel work (fork-join, task
 * groups, parallel loops). Link with -lmoirai -pthread (pkg-config moirai).
 */
#ifndef MOIRAI_H
#define MOIRAI_H

#include <moirai/common.h>
#include <moirai/runtime.h>
#include <moirai/par.h>

#endif /* MOIRAI_H */
