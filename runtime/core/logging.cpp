// spdlog set-up with the rank in every line.
#include "runtime/core/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace tandem {

void init_logging(int rank, int world, bool verbose) {
  auto logger = spdlog::stderr_color_mt("tandem");
  if (world > 1)
    logger->set_pattern(fmt::format("[%H:%M:%S] [rank {}/{}] [%^%l%$] %v", rank, world));
  else
    logger->set_pattern("[%H:%M:%S] [%^%l%$] %v");
  logger->set_level(rank == 0 || verbose ? spdlog::level::info : spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace tandem
