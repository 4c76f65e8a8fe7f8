// Logging: one spdlog logger per process, its pattern carrying the rank.
//
// Contract: init_logging(rank, world) is called once by launch/ before anything logs. Library
// code logs through spdlog's default logger (spdlog::info, ...). Rank 0 logs at info; other
// ranks log warnings and errors only, unless verbose is set, so an 8-rank job is readable.
#pragma once

namespace tandem {

void init_logging(int rank, int world, bool verbose = false);

}  // namespace tandem
