#pragma once
/// \file any_pruner.hpp
/// Run-time composition: each policy family type-erased (any_schedule,
/// any_criterion, any_protector, any_reconstructor), a registry from names to
/// factories that users can extend, and make_pruner() building a pruner from a
/// JSON configuration:
///
///   {"preset": "psap",                      // optional starting point
///    "budget": {"kind": "flops", "target": 0.7},
///    "total_epochs": 30, "final_phase": 0.25, "keep_multiple": 1,
///    "schedule": {"name": "adaptive_sparsity", "eta": 0.3},   // merged into the preset's
///    "criterion": "fpgm",                                      // or replaced by name
///    "protect": {...}, "reconstruct": {...}}

#include <psap/config.hpp>
#include <psap/presets.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace psap {

namespace detail {
/// Copyable owning pointer for the erased families.
template <class I>
class clone_ptr {
public:
    clone_ptr() = default;
    explicit clone_ptr(std::unique_ptr<I> p) : p_(std::move(p)) {}
    clone_ptr(const clone_ptr& o) : p_(o.p_ ? o.p_->clone() : nullptr) {}
    clone_ptr(clone_ptr&&) noexcept = default;
    clone_ptr& operator=(clone_ptr o) noexcept {
        p_.swap(o.p_);
        return *this;
    }
    I* operator->() const {
        if (!p_) fail("psap: an empty type-erased policy was used; build it from a policy or make_pruner()");
        return p_.get();
    }
    explicit operator bool() const noexcept { return static_cast<bool>(p_); }

private:
    std::unique_ptr<I> p_;
};

/// Forwarding of the optional capabilities shared by several families.
template <class Net>
struct common_iface {
    virtual ~common_iface() = default;
    virtual void bind(const Net&) = 0;
    virtual void save(nlohmann::json&) const = 0;
    virtual void load(const nlohmann::json&) = 0;
    virtual nlohmann::json config() const = 0;
};

template <class Base, class P, class Net>
struct common_model : Base {
    P p;
    explicit common_model(P x) : p(std::move(x)) {}
    void bind(const Net& net) override {
        if constexpr (requires { p.bind(net); }) p.bind(net);
    }
    void save(nlohmann::json& j) const override {
        if constexpr (requires { p.save(j); }) p.save(j);
    }
    void load(const nlohmann::json& j) override {
        if constexpr (requires { p.load(j); }) p.load(j);
    }
    nlohmann::json config() const override { return policy_config(p); }
};
}  // namespace detail

/// Any schedule, chosen at run time.
template <network_description Net>
class any_schedule {
    struct iface : detail::common_iface<Net> {
        virtual std::unique_ptr<iface> clone() const = 0;
        virtual void plan(const Net&, const step_context&, schedule_plan&) = 0;
        virtual void prepare(const Net&, std::span<const group_state>, index) = 0;
    };
    template <class P>
    struct model final : detail::common_model<iface, P, Net> {
        using detail::common_model<iface, P, Net>::common_model;
        std::unique_ptr<iface> clone() const override { return std::make_unique<model>(*this); }
        void plan(const Net& n, const step_context& c, schedule_plan& pl) override { this->p.plan(n, c, pl); }
        void prepare(const Net& n, std::span<const group_state> g, index step) override {
            if constexpr (requires { this->p.prepare(n, g, step); }) this->p.prepare(n, g, step);
        }
    };
    detail::clone_ptr<iface> self_;

public:
    any_schedule() = default;
    template <class P>
        requires(!std::same_as<std::remove_cvref_t<P>, any_schedule> && schedule_for<std::remove_cvref_t<P>, Net>)
    any_schedule(P p) : self_(std::make_unique<model<P>>(std::move(p))) {}
    void plan(const Net& n, const step_context& c, schedule_plan& pl) { self_->plan(n, c, pl); }
    /// The held schedule's prepare(), where it has one (else nothing).
    void prepare(const Net& n, std::span<const group_state> g, index step) { self_->prepare(n, g, step); }
    void bind(const Net& n) { self_->bind(n); }
    void save(nlohmann::json& j) const { self_->save(j); }
    void load(const nlohmann::json& j) { self_->load(j); }
    nlohmann::json config() const { return self_->config(); }
};

/// Any criterion, chosen at run time.
template <network_description Net>
class any_criterion {
    struct iface : detail::common_iface<Net> {
        virtual std::unique_ptr<iface> clone() const = 0;
        virtual void score(const Net&, const step_context&, std::span<std::vector<double>>) = 0;
        virtual void observe(const Net&, const observe_context<Net>&) = 0;
        virtual void after_step() = 0;
        virtual void after_failed_step() noexcept = 0;
        virtual void reduce(const all_reduce_fn&) = 0;
    };
    template <class P>
    struct model final : detail::common_model<iface, P, Net> {
        using detail::common_model<iface, P, Net>::common_model;
        std::unique_ptr<iface> clone() const override { return std::make_unique<model>(*this); }
        void score(const Net& n, const step_context& c, std::span<std::vector<double>> s) override { this->p.score(n, c, s); }
        void observe(const Net& n, const observe_context<Net>& o) override {
            if constexpr (requires { this->p.observe(n, o); }) this->p.observe(n, o);
        }
        void after_step() override {
            if constexpr (requires { this->p.after_step(); }) this->p.after_step();
        }
        void after_failed_step() noexcept override {
            if constexpr (requires { this->p.after_failed_step(); }) this->p.after_failed_step();
        }
        void reduce(const all_reduce_fn& f) override {
            if constexpr (requires { this->p.reduce(f); }) this->p.reduce(f);
        }
    };
    detail::clone_ptr<iface> self_;

public:
    any_criterion() = default;
    template <class P>
        requires(!std::same_as<std::remove_cvref_t<P>, any_criterion> && criterion_for<std::remove_cvref_t<P>, Net>)
    any_criterion(P p) : self_(std::make_unique<model<P>>(std::move(p))) {}
    void score(const Net& n, const step_context& c, std::span<std::vector<double>> s) { self_->score(n, c, s); }
    void observe(const Net& n, const observe_context<Net>& o) { self_->observe(n, o); }
    void after_step() { self_->after_step(); }
    void after_failed_step() noexcept {
        if (self_) self_->after_failed_step();  // an empty policy already failed the step
    }
    void reduce(const all_reduce_fn& f) { self_->reduce(f); }
    void bind(const Net& n) { self_->bind(n); }
    void save(nlohmann::json& j) const { self_->save(j); }
    void load(const nlohmann::json& j) { self_->load(j); }
    nlohmann::json config() const { return self_->config(); }
};

/// Any protector, chosen at run time.
template <network_description Net>
class any_protector {
    struct iface : detail::common_iface<Net> {
        virtual std::unique_ptr<iface> clone() const = 0;
        virtual void restores(const Net&, const step_context&, std::span<std::vector<index>>) = 0;
        virtual void shield(const Net&, const step_context&, std::span<const index>, std::span<std::vector<index>>) = 0;
        virtual void observe(const Net&, const observe_context<Net>&) = 0;
        virtual void after_step() = 0;
        virtual void after_failed_step() noexcept = 0;
        virtual void reduce(const all_reduce_fn&) = 0;
        virtual index pulses(std::size_t) const = 0;
    };
    template <class P>
    struct model final : detail::common_model<iface, P, Net> {
        using detail::common_model<iface, P, Net>::common_model;
        std::unique_ptr<iface> clone() const override { return std::make_unique<model>(*this); }
        void restores(const Net& n, const step_context& c, std::span<std::vector<index>> o) override { this->p.restores(n, c, o); }
        void shield(const Net& n, const step_context& c, std::span<const index> q, std::span<std::vector<index>> o) override {
            this->p.shield(n, c, q, o);
        }
        void observe(const Net& n, const observe_context<Net>& o) override {
            if constexpr (requires { this->p.observe(n, o); }) this->p.observe(n, o);
        }
        void after_step() override {
            if constexpr (requires { this->p.after_step(); }) this->p.after_step();
        }
        void after_failed_step() noexcept override {
            if constexpr (requires { this->p.after_failed_step(); }) this->p.after_failed_step();
        }
        void reduce(const all_reduce_fn& f) override {
            if constexpr (requires { this->p.reduce(f); }) this->p.reduce(f);
        }
        index pulses(std::size_t g) const override {
            if constexpr (requires { this->p.pulses(g); })
                return this->p.pulses(g);
            else
                return 0;
        }
    };
    detail::clone_ptr<iface> self_;

public:
    any_protector() = default;
    template <class P>
        requires(!std::same_as<std::remove_cvref_t<P>, any_protector> && protector_for<std::remove_cvref_t<P>, Net>)
    any_protector(P p) : self_(std::make_unique<model<P>>(std::move(p))) {}
    void restores(const Net& n, const step_context& c, std::span<std::vector<index>> o) { self_->restores(n, c, o); }
    void shield(const Net& n, const step_context& c, std::span<const index> q, std::span<std::vector<index>> o) {
        self_->shield(n, c, q, o);
    }
    void observe(const Net& n, const observe_context<Net>& o) { self_->observe(n, o); }
    void after_step() { self_->after_step(); }
    void after_failed_step() noexcept {
        if (self_) self_->after_failed_step();  // an empty policy already failed the step
    }
    void reduce(const all_reduce_fn& f) { self_->reduce(f); }
    index pulses(std::size_t g) const { return self_->pulses(g); }
    void bind(const Net& n) { self_->bind(n); }
    void save(nlohmann::json& j) const { self_->save(j); }
    void load(const nlohmann::json& j) { self_->load(j); }
    nlohmann::json config() const { return self_->config(); }
};

/// Any reconstruction policy, chosen at run time.
template <network_description Net>
class any_reconstructor {
    struct iface : detail::common_iface<Net> {
        virtual std::unique_ptr<iface> clone() const = 0;
        virtual void apply(const Net&, const step_context&, std::span<const group_update>, snapshot_store<Net>&) = 0;
        virtual void after_update(const Net&, std::span<const group_state>, snapshot_store<Net>&) = 0;
        virtual void mask_gradients_of(const Net&, std::span<const group_state>) = 0;
        virtual void finish(const Net&, std::span<const group_state>, snapshot_store<Net>&) = 0;
    };
    template <class P>
    struct model final : detail::common_model<iface, P, Net> {
        using detail::common_model<iface, P, Net>::common_model;
        std::unique_ptr<iface> clone() const override { return std::make_unique<model>(*this); }
        void apply(const Net& n, const step_context& c, std::span<const group_update> u, snapshot_store<Net>& s) override {
            this->p.apply(n, c, u, s);
        }
        void after_update(const Net& n, std::span<const group_state> g, snapshot_store<Net>& s) override {
            this->p.after_update(n, g, s);
        }
        void mask_gradients_of(const Net& n, std::span<const group_state> g) override {
            if constexpr (requires { this->p.mask_gradients_of(n, g); }) this->p.mask_gradients_of(n, g);
        }
        void finish(const Net& n, std::span<const group_state> g, snapshot_store<Net>& s) override {
            if constexpr (requires { this->p.finish(n, g, s); }) this->p.finish(n, g, s);
        }
    };
    detail::clone_ptr<iface> self_;

public:
    any_reconstructor() = default;
    template <class P>
        requires(!std::same_as<std::remove_cvref_t<P>, any_reconstructor> && reconstructor_for<std::remove_cvref_t<P>, Net>)
    any_reconstructor(P p) : self_(std::make_unique<model<P>>(std::move(p))) {}
    void apply(const Net& n, const step_context& c, std::span<const group_update> u, snapshot_store<Net>& s) {
        self_->apply(n, c, u, s);
    }
    void after_update(const Net& n, std::span<const group_state> g, snapshot_store<Net>& s) { self_->after_update(n, g, s); }
    void mask_gradients_of(const Net& n, std::span<const group_state> g) { self_->mask_gradients_of(n, g); }
    void finish(const Net& n, std::span<const group_state> g, snapshot_store<Net>& s) { self_->finish(n, g, s); }
    void bind(const Net& n) { self_->bind(n); }
    void save(nlohmann::json& j) const { self_->save(j); }
    void load(const nlohmann::json& j) { self_->load(j); }
    nlohmann::json config() const { return self_->config(); }
};

/// A pruner whose four policies are chosen at run time.
template <network_description Net = network<float>>
using any_pruner = pruner<any_schedule<Net>, any_criterion<Net>, any_protector<Net>, any_reconstructor<Net>, Net>;

/// Names -> factories for each family; pre-populated with every shipped
/// policy, extendable with add<P>() or add_*(name, factory).
template <network_description Net = network<float>>
class policy_registry {
public:
    template <class E>
    using factory = std::function<E(const nlohmann::json&)>;

    static policy_registry& instance() {
        static policy_registry r;
        return r;
    }

    /// Registers a policy type under P::name, configured through P::fields().
    template <class P>
    void add() {
        auto f = [](const nlohmann::json& j) { return policy_from_config<P>(j); };
        if constexpr (schedule_for<P, Net>) schedules_[P::name] = f;
        if constexpr (criterion_for<P, Net>) criteria_[P::name] = f;
        if constexpr (protector_for<P, Net>) protectors_[P::name] = f;
        if constexpr (reconstructor_for<P, Net>) reconstructors_[P::name] = f;
    }
    void add_schedule(std::string name, factory<any_schedule<Net>> f) { schedules_[std::move(name)] = std::move(f); }
    void add_criterion(std::string name, factory<any_criterion<Net>> f) { criteria_[std::move(name)] = std::move(f); }
    void add_protector(std::string name, factory<any_protector<Net>> f) { protectors_[std::move(name)] = std::move(f); }
    void add_reconstructor(std::string name, factory<any_reconstructor<Net>> f) { reconstructors_[std::move(name)] = std::move(f); }

    any_schedule<Net> schedule(const nlohmann::json& j) const { return build(schedules_, j, "schedule"); }
    any_criterion<Net> criterion(const nlohmann::json& j) const { return build(criteria_, j, "criterion"); }
    any_protector<Net> protector(const nlohmann::json& j) const { return build(protectors_, j, "protect"); }
    any_reconstructor<Net> reconstructor(const nlohmann::json& j) const { return build(reconstructors_, j, "reconstruct"); }

private:
    policy_registry();

    template <class Map>
    static auto build(const Map& m, const nlohmann::json& j, const char* family) {
        if (!j.is_object() || !j.contains("name") || !j.at("name").is_string())
            detail::fail("psap::make_pruner: the ", family, " needs a \"name\", got ", j.dump());
        const auto name = j.at("name").get<std::string>();
        const auto it = m.find(name);
        if (it == m.end()) {
            std::string valid;
            for (const auto& [k, _] : m) valid += (valid.empty() ? "" : ", ") + k;
            detail::fail("psap::make_pruner: unknown ", family, " '", name, "'; known: ", valid);
        }
        return it->second(j);
    }

    std::map<std::string, factory<any_schedule<Net>>> schedules_;
    std::map<std::string, factory<any_criterion<Net>>> criteria_;
    std::map<std::string, factory<any_protector<Net>>> protectors_;
    std::map<std::string, factory<any_reconstructor<Net>>> reconstructors_;
};

// Out of the class body, so not inline: an explicit instantiation
// declaration can then keep every translation unit but one from
// instantiating all the shipped policies (docs/integration.md,
// "JSON configurations").
template <network_description Net>
policy_registry<Net>::policy_registry() {
    add<uniform>();
    add<asymptotic>();
    add<agp>();
    add<adaptive_sparsity>();
    add<global_threshold>();
    add<l1_norm>();
    add<l2_norm>();
    add<fpgm>();
    add<taylor>();
    add<bn_scale>();
    add<random_score>();
    add<no_protection>();
    add<gradient_pulse>();
    add<protective>();
    add<soft>();
    add<hard>();
    add<decay>();
}

#ifdef PSAP_EXTERN_REGISTRY
extern template class policy_registry<network<float>>;
#endif

namespace detail {
/// A configuration value that must be a number, as a double.
inline double config_number(const nlohmann::json& x, const char* key) {
    if (!x.is_number()) fail("psap::make_pruner: '", key, "' must be a number, got ", x.dump());
    return x.get<double>();
}
/// A configuration value that must be a string.
inline std::string config_string(const nlohmann::json& x, const char* key) {
    if (!x.is_string()) fail("psap::make_pruner: '", key, "' must be a string, got ", x.dump());
    return x.get<std::string>();
}

template <class P>
nlohmann::json preset_json(const P& p) {
    auto q = p;  // policies' fields() are non-const
    return {{"schedule", policy_config(q.schedule())},
            {"criterion", policy_config(q.criterion())},
            {"protect", policy_config(q.protector())},
            {"reconstruct", policy_config(q.reconstructor())},
            {"final_phase", q.options().final_phase}};
}
}  // namespace detail

/// The policies and options of a named preset, as make_pruner configuration.
inline nlohmann::json preset_config(std::string_view name) {
    const budget b{};
    if (name == "psap") return detail::preset_json(presets::psap(b, 1));
    if (name == "static_gate") return detail::preset_json(presets::static_gate(b, 1));
    if (name == "sfp") return detail::preset_json(presets::sfp(b, 1));
    if (name == "asfp") return detail::preset_json(presets::asfp(b, 1));
    if (name == "fpgm") return detail::preset_json(presets::fpgm_pruner(b, 1));
    if (name == "l1") return detail::preset_json(presets::l1(b, 1));
    if (name == "slimming") return detail::preset_json(presets::slimming(b, 1));
    if (name == "taylor") return detail::preset_json(presets::taylor_pruner(b, 1));
    if (name == "agp") return detail::preset_json(presets::agp_pruner(b, 1));
    if (name == "random") return detail::preset_json(presets::random(b, 1));
    std::string valid;
    for (auto n : presets::names) valid += (valid.empty() ? "" : ", ") + std::string(n);
    detail::fail("psap::make_pruner: unknown preset '", name, "'; known: ", valid);
}

/// The full configuration a make_pruner() call resolves to (preset merged,
/// every parameter explicit): what a run should record next to its results.
inline nlohmann::json resolve_config(const nlohmann::json& cfg) {
    if (!cfg.is_object()) detail::fail("psap::make_pruner: the configuration must be a JSON object, got ", cfg.dump());
    static const std::set<std::string> top{"preset",      "budget",        "total_epochs", "final_phase", "keep_multiple",
                                           "check_finite", "schedule",     "criterion",    "protect",     "reconstruct"};
    for (const auto& [k, _] : cfg.items())
        if (!top.count(k))
            detail::fail("psap::make_pruner: unknown key '", k,
                         "'; valid: preset, budget, total_epochs, final_phase, keep_multiple, check_finite, schedule, criterion, "
                         "protect, reconstruct");
    nlohmann::json r =
        cfg.contains("preset") ? preset_config(detail::config_string(cfg.at("preset"), "preset")) : nlohmann::json::object();
    if (cfg.contains("preset")) r["preset"] = cfg.at("preset");
    for (const char* fam : {"schedule", "criterion", "protect", "reconstruct"}) {
        if (!cfg.contains(fam)) {
            if (!r.contains(fam)) detail::fail("psap::make_pruner: no ", fam, " given and no preset to take it from");
            continue;
        }
        nlohmann::json x = cfg.at(fam);
        if (x.is_string()) x = {{"name", x}};
        if (!x.is_object()) detail::fail("psap::make_pruner: '", fam, "' must be a name or an object, got ", x.dump());
        if (r.contains(fam) && (!x.contains("name") || x.at("name") == r[fam].at("name")))
            r[fam].merge_patch(x);
        else
            r[fam] = x;
    }
    for (const char* k : {"budget", "total_epochs", "final_phase", "keep_multiple", "check_finite"})
        if (cfg.contains(k)) r[k] = cfg.at(k);
    return r;
}

/// Builds a pruner from a JSON configuration (see the file comment). Returns
/// any_pruner<Net>; the type is deduced so that clang, too, reports a wrong
/// Net by its concept (it checks an alias return type first).
template <network_description Net = network<float>>
auto make_pruner(const nlohmann::json& cfg) {
    const auto r = resolve_config(cfg);
    pruner_options o;
    if (r.contains("budget")) {
        const auto& b = r.at("budget");
        if (b.is_number())
            o.target.target = detail::config_number(b, "budget");
        else if (b.is_object()) {
            for (const auto& [k, _] : b.items())
                if (k != "kind" && k != "target")
                    detail::fail("psap::make_pruner: unknown key '", k, "' in 'budget'; valid: kind, target");
            if (!b.contains("target"))
                detail::fail("psap::make_pruner: 'budget' has no 'target'; give the fraction to remove, e.g. {\"kind\": \"flops\", "
                             "\"target\": 0.5}");
            if (b.contains("kind")) o.target.kind = parse_budget_kind(detail::config_string(b.at("kind"), "budget.kind"));
            o.target.target = detail::config_number(b.at("target"), "budget.target");
        } else
            detail::fail("psap::make_pruner: 'budget' must be a number (the fraction of FLOPs to remove) or an object "
                         "{\"kind\": ..., \"target\": ...}, got ",
                         b.dump());
    }
    if (r.contains("total_epochs")) o.total_epochs = detail::config_number(r.at("total_epochs"), "total_epochs");
    if (r.contains("final_phase")) o.final_phase = detail::config_number(r.at("final_phase"), "final_phase");
    if (r.contains("keep_multiple")) {
        const auto& k = r.at("keep_multiple");
        if (!k.is_number_integer()) detail::fail("psap::make_pruner: 'keep_multiple' must be an integer >= 1, got ", k.dump());
        if (k.is_number_unsigned() && k.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<index>::max()))
            detail::fail("psap::make_pruner: 'keep_multiple' ", k.dump(), " is out of range; use a small multiple such as 8");
        o.keep_multiple = k.get<index>();
    }
    if (r.contains("check_finite")) {
        const auto& c = r.at("check_finite");
        if (!c.is_boolean()) detail::fail("psap::make_pruner: 'check_finite' must be true or false, got ", c.dump());
        o.check_finite = c.get<bool>();
    }
    const auto& reg = policy_registry<Net>::instance();
    return any_pruner<Net>(o, reg.schedule(r.at("schedule")), reg.criterion(r.at("criterion")), reg.protector(r.at("protect")),
                           reg.reconstructor(r.at("reconstruct")));
}

/// The configuration a pruner runs with (policies with every parameter).
template <network_description Net>
nlohmann::json describe(const any_pruner<Net>& p) {
    auto& q = const_cast<any_pruner<Net>&>(p);
    const auto& o = p.options();
    return {{"budget", {{"kind", to_string(o.target.kind)}, {"target", o.target.target}}},
            {"total_epochs", o.total_epochs},
            {"final_phase", o.final_phase},
            {"keep_multiple", o.keep_multiple},
            {"check_finite", o.check_finite},
            {"schedule", q.schedule().config()},
            {"criterion", q.criterion().config()},
            {"protect", q.protector().config()},
            {"reconstruct", q.reconstructor().config()}};
}

}  // namespace psap
