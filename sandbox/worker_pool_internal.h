// Internal to sandbox/worker_pool*.cc: what the pool's slots and jobs share.
#ifndef MODELDOCK_SANDBOX_WORKER_POOL_INTERNAL_H_
#define MODELDOCK_SANDBOX_WORKER_POOL_INTERNAL_H_

#include <string>

namespace modeldock::sandbox::internal {

// Status payloads: WorkerPool::IsOverloaded and IsMemoryExceeded recognise them.
inline constexpr char kOverloadedPayload[] = "modeldock.sandbox/overloaded";
inline constexpr char kMemoryPayload[] = "modeldock.sandbox/memory";

// "killed by signal 9 (Killed): ...", "exited with status 1": how a worker ended (waitpid's
// status).
std::string DescribeExit(int status);

}  // namespace modeldock::sandbox::internal

#endif  // MODELDOCK_SANDBOX_WORKER_POOL_INTERNAL_H_
