#pragma once
// Where block-wise reconstruction keeps the calibration activations at a block boundary (the next window's inputs,
// the window's targets): on disk by default, so that memory does not grow with the calibration set, or in memory.
//
// Disk (default): each batch is appended to an anonymous temporary file (std::tmpfile, removed when closed) and read
// back when a step needs it. A step reads one batch, so the memory held is a few batches whatever the number of
// batches; the file grows with the calibration set instead. Chosen over recomputing each window's inputs from the
// embeddings because recomputing costs a forward pass through every earlier block at every step (quadratic in depth)
// and needs the full-precision weights of the already quantized blocks kept aside; one sequential read is cheap.
// Memory: all batches stay in memory (faster for a small calibration set; grows with it).
//
// ActivationBytes counts the bytes of every activation matrix the reconstruction holds (stored in memory or read back
// for a step), with its peak: the tests check that peak, not the rows of a call.
#include <cstdio>
#include <memory>
#include <utility>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"

namespace npft::ptq {

enum class ActivationStorage { disk, memory };

/// Bytes of activation matrices alive, and the most there ever were.
struct ActivationBytes {
    std::size_t current = 0;
    std::size_t peak = 0;
    void add(std::size_t bytes) {
        current += bytes;
        peak = std::max(peak, current);
    }
    void remove(std::size_t bytes) { current -= bytes; }
};

/// A matrix whose bytes are counted in an ActivationBytes while it lives.
class Activation {
public:
    Activation(Matrix value, ActivationBytes& counter) : value_(std::move(value)), counter_(&counter) { counter_->add(bytes()); }
    Activation(const Activation&) = delete;
    Activation& operator=(const Activation&) = delete;
    Activation(Activation&& other) noexcept : value_(std::move(other.value_)), counter_(std::exchange(other.counter_, nullptr)) {}
    Activation& operator=(Activation&& other) noexcept {
        if (this != &other) {
            release();
            value_ = std::move(other.value_);
            counter_ = std::exchange(other.counter_, nullptr);
        }
        return *this;
    }
    ~Activation() { release(); }

    const Matrix& matrix() const { return value_; }

private:
    std::size_t bytes() const { return static_cast<std::size_t>(value_.size()) * sizeof(float); }
    void release() {
        if (counter_) counter_->remove(bytes());
        counter_ = nullptr;
    }
    Matrix value_;
    ActivationBytes* counter_;
};

/// Batches of activations appended in order and read back by index.
class ActivationStore {
public:
    ActivationStore(ActivationStorage storage, ActivationBytes& counter) : storage_(storage), counter_(&counter) {
        if (storage_ == ActivationStorage::disk) {
            file_.reset(std::tmpfile());
            require(file_ != nullptr, "block-wise reconstruction cannot create a temporary file for its calibration "
                                      "activations (ActivationStorage::disk); use ActivationStorage::memory");
        }
    }

    Index size() const { return static_cast<Index>(shapes_.size()); }

    void append(const Matrix& batch) {
        if (storage_ == ActivationStorage::memory) {
            kept_.emplace_back(batch, *counter_);
        } else {
            const auto count = static_cast<std::size_t>(batch.size());
            require(std::fseek(file_.get(), 0, SEEK_END) == 0 &&
                        std::fwrite(batch.data(), sizeof(float), count, file_.get()) == count,
                    "block-wise reconstruction could not write ", count * sizeof(float),
                    " bytes of calibration activations to its temporary file (disk full?)");
        }
        offsets_.push_back(next_offset_);
        next_offset_ += static_cast<long>(batch.size()) * static_cast<long>(sizeof(float));
        shapes_.emplace_back(batch.rows(), batch.cols());
    }

    Activation read(Index k) const {
        require(k >= 0 && k < size(), "activation batch ", k, " out of range [0, ", size(), ")");
        const auto at = static_cast<std::size_t>(k);
        if (storage_ == ActivationStorage::memory) return Activation(kept_[at].matrix(), *counter_);
        Matrix batch(shapes_[at].first, shapes_[at].second);
        const auto count = static_cast<std::size_t>(batch.size());
        require(std::fseek(file_.get(), offsets_[at], SEEK_SET) == 0 &&
                    std::fread(batch.data(), sizeof(float), count, file_.get()) == count,
                "block-wise reconstruction could not read batch ", k, " back from its temporary file");
        return Activation(std::move(batch), *counter_);
    }

private:
    struct CloseFile {
        void operator()(std::FILE* f) const { std::fclose(f); }
    };
    ActivationStorage storage_;
    ActivationBytes* counter_;
    std::unique_ptr<std::FILE, CloseFile> file_;
    std::vector<Activation> kept_;
    std::vector<long> offsets_;  // disk: where each batch starts
    std::vector<std::pair<Index, Index>> shapes_;
    long next_offset_ = 0;
};

}  // namespace npft::ptq
