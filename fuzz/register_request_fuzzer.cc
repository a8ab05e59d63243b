// The header of a RegisterModel stream (a RegisterModelHeader parsed from the input) as
// service.cc checks it and turns it into the engine's ModelSpec; the payload, parsed as a
// ListModelsRequest, exercises the other enum translations of a request.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_checks.h"
#include "fuzz/request_input.h"
#include "server/request_decoding.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldock;
  const fuzz::RequestInput in = fuzz::SplitRequestInput(data, size);
  v1::RegisterModelHeader header;
  if (header.ParseFromArray(in.message.data(), static_cast<int>(in.message.size()))) {
    auto spec = server::DecodeRegisterHeader(header);
    if (spec.ok()) {
      FUZZ_CHECK(header.size_bytes() > 0);
      FUZZ_CHECK(spec->name == header.spec().name());
      FUZZ_CHECK(static_cast<int>(spec->input_shape.size()) == header.spec().input_shape_size());
      FUZZ_CHECK(static_cast<int>(spec->class_labels.size()) ==
                 header.spec().class_labels_size());
    }
  }
  v1::ListModelsRequest list;
  if (list.ParseFromArray(in.payload.data(), static_cast<int>(in.payload.size()))) {
    auto task = server::FromProto(list.task(), 0);
    auto state = server::FromProto(list.state());
    (void)task;
    (void)state;
  }
  return 0;
}
