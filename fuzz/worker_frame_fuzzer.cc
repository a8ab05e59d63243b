// The server reads every frame a model worker sends (sandbox/wire.h): a worker runs untrusted
// code, so its frames are untrusted bytes too. Feeds the input through a socket to ReadResponse
// (prefix, head, tensor values) and straight to both head decoders.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sandbox/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldock::sandbox;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)DecodeRequestHead(bytes);
  auto head = DecodeResponseHead(bytes);
  if (head.ok() && head->code == 0 && !head->logits.shape.empty()) {
    // A decoded shape never describes more than 2^40 elements.
    uint64_t n = 1;
    for (int64_t d : head->logits.shape) n *= static_cast<uint64_t>(d);
    if (n > (uint64_t{1} << 40)) __builtin_trap();
  }
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return 0;
  // The input fits the socket buffer (max_len is far below it), so one write never blocks.
  if (size > 0 && write(fds[1], data, size) != static_cast<ssize_t>(size)) {
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  close(fds[1]);
  auto response = ReadResponse(fds[0], /*max_floats=*/1 << 16, nullptr);
  if (response.ok()) {
    const uint64_t values = response->logits.values.size() + response->features.values.size();
    if (values > (1 << 16)) __builtin_trap();  // the bound the server passes holds
  }
  close(fds[0]);
  return 0;
}
