# tidal_api: the gRPC service (TidalService, StartServer), label selectors and
# the grpc::Status <-> absl::Status helper.
add_library(tidal_api
  ${CMAKE_CURRENT_LIST_DIR}/service.cc
  ${CMAKE_CURRENT_LIST_DIR}/service_apps.cc
  ${CMAKE_CURRENT_LIST_DIR}/service_rollouts.cc
  ${CMAKE_CURRENT_LIST_DIR}/service_status.cc
  ${CMAKE_CURRENT_LIST_DIR}/service_instances.cc
  ${CMAKE_CURRENT_LIST_DIR}/service_grpc.cc
  ${CMAKE_CURRENT_LIST_DIR}/call_limiter.cc
  ${CMAKE_CURRENT_LIST_DIR}/client_pacer.cc
  ${CMAKE_CURRENT_LIST_DIR}/service_secrets.cc
  ${CMAKE_CURRENT_LIST_DIR}/secret_store.cc
  ${CMAKE_CURRENT_LIST_DIR}/grpc_status.cc
  ${CMAKE_CURRENT_LIST_DIR}/auth.cc
  ${CMAKE_CURRENT_LIST_DIR}/tokens.cc
  ${CMAKE_CURRENT_LIST_DIR}/audit.cc
  ${CMAKE_CURRENT_LIST_DIR}/api_auth.cc
  ${CMAKE_CURRENT_LIST_DIR}/label_selector.cc)
target_link_libraries(tidal_api PUBLIC tidal_proto tidal_spec tidal_load_history tidal_common tidal_secret_box gRPC::grpc++ tidal_tls_files
  absl::random_random absl::str_format
  PRIVATE OpenSSL::Crypto spdlog::spdlog)
