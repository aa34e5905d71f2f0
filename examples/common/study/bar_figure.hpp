#pragma once
// A figure of bars with 95% error bars, drawn by gnuplot: one panel per value of one field (e.g. the bit width, each
// with its own y scale, so that the 4-bit bars are not flattened by the 2-bit ones), clusters along x inside a panel
// (e.g. the grids) and one bar per series in a cluster (e.g. the arms), each series in its own colour in every panel.
// The studies draw their quantization gaps and paired differences with it.
//
//   study::BarFigure f;
//   f.panels = {"2-bit", "3-bit"}; f.clusters = {"g0", "g128"}; f.series = {"rtn", "npft-reference"};
//   f.bars[{"3-bit", "g0", "rtn"}] = {0.048, 0.046, 0.050};
//   study::draw(f, "results", "docs/study_gaps.png");   // writes results/study_gaps.{dat,gp}, runs gnuplot
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "text.hpp"

namespace study {

struct Bar {
    double mean = NAN, low = NAN, high = NAN;  ///< the estimate and its 95% interval
};

struct BarFigure {
    std::string title;
    std::string ylabel;
    std::vector<std::string> panels;    ///< one panel each, stacked top to bottom
    std::vector<std::string> clusters;  ///< x positions inside each panel
    std::vector<std::string> series;    ///< bars of a cluster, left to right; series i has colour i
    std::map<std::array<std::string, 3>, Bar> bars;  ///< {panel, cluster, series}; missing bars are left empty
    int width = 1200;
    int panel_height = 300;
    bool y_from_zero = false;  ///< bars of a non-negative quantity: the axis starts at 0, so bar heights compare
};

/// Twelve colours that stay apart in print and for the common colour-vision deficiencies (gnuplot's default cycle
/// has eight, so a tenth arm would share the first one's colour).
inline const char* series_colour(std::size_t i) {
    static const char* colours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                                    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1b1b1b", "#17becf"};
    return colours[i % (sizeof colours / sizeof colours[0])];
}

inline std::string plot_number(double v) {
    if (!std::isfinite(v)) return "NaN";
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v);
    return b;
}

/// Writes data_dir/<stem>.dat and .gp (stem: png's file name without extension) and runs gnuplot to make `png`.
/// Returns false (with a warning) when there is nothing to draw or gnuplot is missing or fails.
inline bool draw(const BarFigure& f, const std::filesystem::path& data_dir, const std::filesystem::path& png) {
    namespace fs = std::filesystem;
    if (f.bars.empty() || f.panels.empty() || f.series.empty()) return false;
    const std::string stem = png.stem().string();
    const fs::path dat = fs::absolute(data_dir / (stem + ".dat"));
    const fs::path gp_path = fs::absolute(data_dir / (stem + ".gp"));
    // One gnuplot data block per panel (separated by two blank lines, addressed with `index`).
    std::string d;
    for (std::size_t p = 0; p < f.panels.size(); ++p) {
        d += "# ";
        d += f.panels[p];
        d += ": cluster, then mean low high per series\n";
        for (const auto& cluster : f.clusters) {
            d += '"';
            d += cluster;
            d += '"';
            for (const auto& s : f.series) {
                const auto it = f.bars.find({f.panels[p], cluster, s});
                const Bar b = it == f.bars.end() ? Bar{} : it->second;
                for (const double v : {b.mean, b.low, b.high}) {  // appended one by one: GCC 12 -Wrestrict misfires on "\t" + string
                    d += '\t';
                    d += plot_number(v);
                }
            }
            d += "\n";
        }
        d += "\n\n";
    }
    write_text(dat, d);
    const int height = 70 + f.panel_height * static_cast<int>(f.panels.size());
    std::string gp = "set terminal pngcairo size " + std::to_string(f.width) + "," + std::to_string(height) +
                     " font ',10'\nset output '" + fs::absolute(png).string() + "'\n" +
                     "set multiplot layout " + std::to_string(f.panels.size()) + ",1 title '" + f.title + "'\n" +
                     "set style data histogram\nset style histogram errorbars gap 1 lw 1\nset style fill solid 0.85 border -1\n"
                     "set grid ytics\nset xzeroaxis lt -1 lw 1.5\nset key outside right\nset ylabel '" + f.ylabel + "'\n" +
                     (f.y_from_zero ? "set yrange [0:*]\n" : "");
    for (std::size_t p = 0; p < f.panels.size(); ++p) {
        gp += "set title '" + f.panels[p] + "'\nplot ";
        for (std::size_t i = 0; i < f.series.size(); ++i)
            gp += std::string(i ? ", " : "") + "'" + dat.string() + "' index " + std::to_string(p) + " using " +
                  std::to_string(2 + 3 * i) + ":" + std::to_string(3 + 3 * i) + ":" + std::to_string(4 + 3 * i) +
                  (i == 0 ? ":xtic(1)" : "") + " title '" + f.series[i] + "' lc rgb '" + series_colour(i) + "'";
        gp += "\n";
    }
    write_text(gp_path, gp + "unset multiplot\n");
    const std::string command = "gnuplot '" + gp_path.string() + "' 2>&1";
    if (std::system(command.c_str()) != 0) {
        std::fprintf(stderr, "warning: gnuplot failed or is missing (apt-get install gnuplot-nox): no %s\n", png.string().c_str());
        return false;
    }
    return true;
}

}  // namespace study
