"""
Reference implementations for omicsembed, in Julia: the deep Boltzmann machine of
BoltzmannMachines.jl (Lenz et al.) and a Bernoulli VAE in Flux, with the same inputs and
outputs as omicsembed's own `DeepBoltzmannMachine` and `BernoulliVAE`, so that results can be
compared across languages (Hess, Hackenberg & Binder 2020 used these Julia packages).

Called from Python through `omicsembed.julia` (juliacall). Data are cells × genes matrices of
0.0/1.0 values.
"""
module OmicsEmbedReference

import BoltzmannMachines
import Flux
import Random

export fit_dbm, sample_dbm, fit_bernoulli_vae, generate_bernoulli_vae, n_features

"""
    fit_dbm(x; hidden_sizes, pretraining_epochs, epochs, learning_rate,
            pretraining_learning_rate, batch_size, n_particles, seed)

Train a DBM with `BoltzmannMachines.fitdbm` (layer-wise pretraining by stacked RBMs, then joint
fine-tuning with mean-field positive phase and persistent Gibbs particles). The keywords and
their defaults are those of omicsembed's `DeepBoltzmannMachine`; `nothing` for
`pretraining_epochs` / `pretraining_learning_rate` means `epochs` / `learning_rate`, as there.
`batch_size` is the pretraining minibatch size (`batchsizepretraining`).
"""
function fit_dbm(x::AbstractMatrix{<:Real};
        hidden_sizes::AbstractVector{<:Integer} = [100, 20, 10],
        pretraining_epochs::Union{Nothing, Integer} = nothing,
        epochs::Integer = 10,
        learning_rate::Real = 0.005,
        pretraining_learning_rate::Union{Nothing, Real} = nothing,
        batch_size::Integer = 1,
        n_particles::Integer = 100,
        seed::Integer = 0)
    Random.seed!(seed)
    return BoltzmannMachines.fitdbm(Matrix{Float64}(x);
        nhiddens = Vector{Int}(hidden_sizes),
        epochs = Int(epochs),
        epochspretraining = Int(something(pretraining_epochs, epochs)),
        learningrate = Float64(learning_rate),
        learningratepretraining = Float64(something(pretraining_learning_rate, learning_rate)),
        batchsizepretraining = Int(batch_size),
        nparticles = Int(n_particles))
end

"""
    sample_dbm(dbm, n_samples; burn_in, seed, clamp_mask, clamp_values) -> Vector{Matrix{Float64}}

Gibbs samples of all layers (visible first) after `burn_in` sweeps from fresh particles
(`initparticles` + `gibbssample!`). With `clamp_mask` (a Bool vector over the visible units)
the masked visible units start at `clamp_values` (samples × units, 0.0/1.0) and stay there
(`gibbssamplecond!`, conditional sampling).
"""
function sample_dbm(dbm, n_samples::Integer; burn_in::Integer = 50, seed::Integer = 0,
        clamp_mask::Union{Nothing, AbstractVector{Bool}} = nothing,
        clamp_values::Union{Nothing, AbstractMatrix{<:Real}} = nothing)
    Random.seed!(seed)
    particles = BoltzmannMachines.initparticles(dbm, Int(n_samples))
    if clamp_mask === nothing
        BoltzmannMachines.gibbssample!(particles, dbm, Int(burn_in))
    else
        mask = Vector{Bool}(clamp_mask)
        particles[1][:, mask] .= Matrix{Float64}(clamp_values)[:, mask]
        BoltzmannMachines.gibbssamplecond!(particles, dbm, mask, Int(burn_in))
    end
    return [Matrix{Float64}(layer) for layer in particles]
end

"""
    n_features(model) -> Int

Number of visible units of a DBM, or of input features of a Bernoulli VAE.
"""
n_features(dbm::BoltzmannMachines.MultimodalDBM) = BoltzmannMachines.nvisiblenodes(dbm[1])

struct BernoulliVAE
    encoder
    mean
    log_sd
    decoder
end
Flux.@layer BernoulliVAE

function _encode(vae::BernoulliVAE, x)
    hidden = vae.encoder(x)
    return vae.mean(hidden), vae.log_sd(hidden)
end

function _negative_elbo(vae::BernoulliVAE, x)
    mu, log_sd = _encode(vae, x)
    z = mu .+ exp.(log_sd) .* randn(Float32, size(mu))
    logits = vae.decoder(z)
    reconstruction = sum(Flux.Losses.logitbinarycrossentropy(logits, x; agg = identity))
    kl = 0.5f0 * sum(exp.(2 .* log_sd) .+ mu .^ 2 .- 1 .- 2 .* log_sd)
    return (reconstruction + kl) / size(x, 2)
end

"""
    fit_bernoulli_vae(x; n_latent, hidden_sizes, learning_rate, batch_size, max_epochs, seed)

Bernoulli VAE as in Hess et al. 2020 §2.4: tanh encoder and decoder, sigmoid Bernoulli output,
standard normal prior, Adam. `x` is cells × genes. The keywords and their defaults are those
of omicsembed's `BernoulliVAE`, and as there the decoder's output bias starts at the logit of
the genes' frequencies (clipped to [1e-3, 1 - 1e-3]); it trains for all `max_epochs` (no
validation split or early stopping).
"""
function fit_bernoulli_vae(x::AbstractMatrix{<:Real};
        n_latent::Integer = 10,
        hidden_sizes::AbstractVector{<:Integer} = [100],
        learning_rate::Real = 1e-4,
        batch_size::Integer = 32,
        max_epochs::Integer = 300,
        seed::Integer = 0)
    Random.seed!(seed)
    data = Matrix{Float32}(permutedims(x))  # Flux: features × observations
    p = size(data, 1)
    widths = [p; Vector{Int}(hidden_sizes)]
    encoder = Flux.Chain([Flux.Dense(widths[i] => widths[i + 1], tanh) for i in 1:(length(widths) - 1)]...)
    reversed = reverse(widths)
    decoder = Flux.Chain(Flux.Dense(Int(n_latent) => reversed[1], tanh),
        [Flux.Dense(reversed[i] => reversed[i + 1], i + 1 == length(reversed) ? identity : tanh)
         for i in 1:(length(reversed) - 1)]...)
    frequencies = clamp.(vec(sum(data; dims = 2)) ./ size(data, 2), 1.0f-3, 1.0f0 - 1.0f-3)
    decoder[end].bias .= log.(frequencies) .- log1p.(-frequencies)
    vae = BernoulliVAE(encoder, Flux.Dense(widths[end] => Int(n_latent)),
        Flux.Dense(widths[end] => Int(n_latent)), decoder)
    state = Flux.setup(Flux.Adam(Float64(learning_rate)), vae)
    loader = Flux.DataLoader(data; batchsize = Int(batch_size), shuffle = true)
    for _ in 1:max_epochs
        for batch in loader
            gradients = Flux.gradient(model -> _negative_elbo(model, batch), vae)
            Flux.update!(state, vae, gradients[1])
        end
    end
    return vae
end

n_features(vae::BernoulliVAE) = size(vae.encoder[1].weight, 2)

"""
    generate_bernoulli_vae(vae, n_samples; seed, cells) -> (features, latent)

Synthetic binary cells (Bernoulli draws from the decoder mean) and their latent codes z, both
samples × units (the caller dichotomises z). z is drawn from the prior N(0, I), or with `cells`
(cells × genes, 0.0/1.0) from the posterior q(z | x) of cell `1 + (i - 1) mod n_cells` for
sample `i`.
"""
function generate_bernoulli_vae(vae::BernoulliVAE, n_samples::Integer; seed::Integer = 0,
        cells::Union{Nothing, AbstractMatrix{<:Real}} = nothing)
    Random.seed!(seed)
    noise = randn(Float32, size(vae.mean.weight, 1), Int(n_samples))
    if cells === nothing
        z = noise
    else
        mu, log_sd = _encode(vae, Matrix{Float32}(permutedims(cells)))
        rows = mod1.(1:Int(n_samples), size(mu, 2))
        z = mu[:, rows] .+ exp.(log_sd[:, rows]) .* noise
    end
    means = Flux.sigmoid.(vae.decoder(z))
    features = Float64.(rand(Float32, size(means)) .< means)
    return permutedims(features), permutedims(Float64.(z))
end

end # module
