#pragma once

// The dashboard's static files (src/dashboard/web: index.html, the bundle,
// the style sheet), built into tidald by src/dashboard/embed.cmake: nothing
// is read from disk or fetched from elsewhere at run time.

#include <cstddef>
#include <string>

namespace tidal::dashboard {

struct DashboardAsset {
  const char* name;          // "index.html", "app.js", "style.css"
  const char* content_type;  // "text/html; charset=utf-8", ...
  const unsigned char* data;
  size_t size;
};

// The asset called `name`, or null.
const DashboardAsset* FindDashboardAsset(const std::string& name);

}  // namespace tidal::dashboard
