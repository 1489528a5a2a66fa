/*
 * moirai/moirai.h - the whole public API of Moirai, a Linux concurrency
 * runtime: work-stealing workers for CPU-parallel work (fork-join, task
 * groups, parallel loops) and fibers that park instead of blocking, with
 * fiber-aware synchronisation and timers, on the same workers.
 * Link with -lmoirai -pthread (pkg-config moirai).
 */
#ifndef MOIRAI_H
#define MOIRAI_H

#include <moirai/common.h>
#include <moirai/runtime.h>
#include <moirai/par.h>
#include <moirai/algo.h>
#include <moirai/fiber.h>
#include <moirai/sync.h>
#include <moirai/chan.h>
#include <moirai/io.h>
#include <moirai/blocking.h>
#include <moirai/stats.h>

#endif /* MOIRAI_H */
