#include "lla/oracle/types.hpp"

namespace lla::oracle {

const char* to_string(ForwardAlgorithm a) {
  switch (a) {
    case ForwardAlgorithm::plain: return "plain";
    case ForwardAlgorithm::blocked: return "blocked";
    case ForwardAlgorithm::online: return "online";
  }
  return "unknown";
}

const char* to_string(BackwardAlgorithm a) {
  switch (a) {
    case BackwardAlgorithm::plain: return "plain";
    case BackwardAlgorithm::blocked: return "blocked";
  }
  return "unknown";
}

}  // namespace lla::oracle
