defmodule ElixirHello.MixProject do
  use Mix.Project

  # The version is fixed at build time: `HELLO_VERSION=2.0.0 mix release` builds v2.
  def project do
    [
      app: :elixir_hello,
      version: System.get_env("HELLO_VERSION", "0.1.0"),
      elixir: "~> 1.14",
      deps: [],
      releases: [elixir_hello: [include_executables_for: [:unix]]]
    ]
  end

  def application do
    [extra_applications: [:logger], mod: {ElixirHello.Application, []}]
  end
end
