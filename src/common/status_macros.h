#pragma once

// Small status helpers: Abseil 20220623 has no RETURN_IF_ERROR.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TIDAL_CONCAT_INNER_(a, b) a##b
#define TIDAL_CONCAT_(a, b) TIDAL_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                   \
  do {                                          \
    ::absl::Status _tidal_status = (expr);      \
    if (!_tidal_status.ok()) return _tidal_status; \
  } while (0)

// ASSIGN_OR_RETURN(auto x, Foo()); declares x from a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL_(TIDAL_CONCAT_(_tidal_statusor_, __LINE__), lhs, rexpr)
#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                           \
  if (!statusor.ok()) return statusor.status();      \
  lhs = std::move(statusor).value()
