// The library's forwarding store, under the name tests use.
#pragma once

#include "store/forwarding_store.hpp"

namespace mailers_test {

using forwarding_store = mailers::detail::forwarding_store;

}  // namespace mailers_test
