// Summaries of repeated measurements and of latency samples.
//
// Every figure the suite reports is the median of several repetitions with their min and max,
// so that one run disturbed by a neighbour on the shared machine does not become the headline.
#pragma once

#include <vector>

namespace dispatch::bench {

struct summary {
  double median = 0;
  double min = 0;
  double max = 0;
  std::vector<double> samples;  // in the order measured
};

// Median (mean of the middle two for an even count), min and max. An empty input gives zeros.
summary summarize(const std::vector<double>& samples);

// The q-quantile (0 <= q <= 1) by the nearest-rank method; `values` is sorted in place.
double percentile(std::vector<double>& values, double q);

}  // namespace dispatch::bench
