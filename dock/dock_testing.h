// Tests only: opens a dock whose metadata store the test wraps first (e.g. in
// test::FaultyMetadataStore, dock/testing/faulty_store.h), so that a test can inject store
// faults into a whole dock. Production code opens docks with Dock::Create.
#ifndef MODELDOCK_DOCK_DOCK_TESTING_H_
#define MODELDOCK_DOCK_DOCK_TESTING_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "dock/dock.h"
#include "dock/metadata_store.h"

namespace modeldock::dock {

// Gets the store Dock::Create would use (SQLite or PostgreSQL, per the options) and returns the
// one the dock uses instead.
using StoreWrapper =
    std::function<std::unique_ptr<MetadataStore>(std::unique_ptr<MetadataStore> opened)>;

// Dock::Create with the opened store passed through `wrap` first.
absl::StatusOr<std::unique_ptr<Dock>> CreateDockWithStore(const DockOptions& options,
                                                          StoreWrapper wrap);

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_DOCK_TESTING_H_
