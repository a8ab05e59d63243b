// The request id of the work a thread is doing, for log lines: set for the life of a call by the
// server (server/request_id.h) and carried by the engine into the threads that work for the
// call (stage 2's candidate threads, the probing job of a registration, a report's background
// scoring), so that every log line of a request names it.
#ifndef MODELDOCK_COMMON_REQUEST_CONTEXT_H_
#define MODELDOCK_COMMON_REQUEST_CONTEXT_H_

#include <string>

namespace modeldock {

// The calling thread's request id; empty when it works for no request.
const std::string& CurrentRequestId();

// Sets the calling thread's request id until destroyed, then restores the one before (so
// scopes nest, and a thread that carries an id into a job gets its own back afterwards).
class ScopedRequestId {
 public:
  explicit ScopedRequestId(std::string id);
  ~ScopedRequestId();
  ScopedRequestId(const ScopedRequestId&) = delete;
  ScopedRequestId& operator=(const ScopedRequestId&) = delete;

 private:
  std::string previous_;
};

}  // namespace modeldock

#endif  // MODELDOCK_COMMON_REQUEST_CONTEXT_H_
