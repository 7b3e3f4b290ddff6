# Tests of the API service (real gRPC server on 127.0.0.1:0 over MemoryStore)
# and of label selectors.
tidal_add_test(service_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/service_test.cc LIBS tidal_api tidal_invalid_specs)
tidal_add_test(label_selector_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/label_selector_test.cc
  LIBS tidal_api)
# One undecodable app in a real SQLite store: the rest are served.
tidal_add_test(service_damage_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/service_damage_test.cc LIBS tidal_api tidal_store)
# Secrets: apply, get, list, delete; sealed in the store, no value answered.
tidal_add_test(service_secrets_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/service_secrets_test.cc LIBS tidal_api)
