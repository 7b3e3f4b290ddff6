# Tests of the API service (real gRPC server on 127.0.0.1:0 over MemoryStore)
# and of label selectors.
tidal_add_test(service_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/service_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/call_limiter_test.cc ${CMAKE_CURRENT_LIST_DIR}/client_pacer_test.cc
  LIBS tidal_api tidal_invalid_specs)
tidal_add_test(label_selector_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/label_selector_test.cc
  LIBS tidal_api)
# One undecodable app in a real SQLite store: the rest are served.
tidal_add_test(service_damage_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/service_damage_test.cc LIBS tidal_api tidal_store)
# Authentication and authorization: the isolation matrix over a real gRPC
# server on a real SQLite file; tokens, roles and the audit log.
tidal_add_test(authz_matrix_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/authz_matrix_test.cc
  LIBS tidal_api tidal_store tidal_fakes)
tidal_add_test(auth_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/auth_test.cc
  LIBS tidal_api tidal_store tidal_fakes)
# Secrets: apply, get, list, delete; sealed in the store, no value answered.
tidal_add_test(service_secrets_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/service_secrets_test.cc LIBS tidal_api)
