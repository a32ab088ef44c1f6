"""What snip-min adds to the method: one module per thing, each importing the method, never
imported by it.

The house has one direction. At the bottom, snip_min.py is the method (layers, loss,
initialisation, SNIP, optimiser, training) and data.py the datasets; models.py builds the
networks from the layers there and in the first two modules below; the other modules add a
feature each; cli.py, the command line, sits on top and calls them all. A module here imports
only what sits below it, so every module imports on its own.

    module         adds                                     names the project uses
    zoo_layers     the zoo's layers: batch norm, average    BatchNorm, AvgPool2D, GlobalAvgPool,
                   pooling, residual and concat blocks      Residual, Identity, ZeroChannels,
                                                            Concat
    recurrent      LSTM and GRU, backward through time      LSTM, GRU, AsSequence
    criteria       SNIP's successors as baselines           prune_by, METHODS, synflow_scores,
                   (--method)                               grasp_scores, iterate
    sanity         the sanity checks (--sanity-check)       prune_checked, CHECKS, shuffle,
                                                            reinitialise
    protocol       the authors' protocol (--protocol)       add_arguments, resolve, draw_*,
                                                            periodic_test_error, results
    compaction     dead units and --compact                 alive_units, alive_summary, compact
    checkpoints    stopping and resuming (--resume,         Saver, read_checkpoint, restore,
                   Ctrl-C)                                  stop_on_signals, CheckpointError
    network_file   a trained network on disk: network.npz   write_network, load_network,
                   (--evaluate, --mask)                     read_masks, evaluate_network
    pytorch_twin   the same network in PyTorch (the         to_torch, export_state_dict,
                   tests' cross-checks, the benchmark,      masks_from_state_dict
                   scripts/pytorch_io.py)
    flags          argparse types that refuse bad input     OneLineParser, HelpFormatter,
                   in one line                              positive_int, sparsity_value, ...
    failures       one line and an exit status for every    explain, report, run_script,
                   failure, the same in every script        divergence_message
    cli            the command line of snip_min.py          run, parse_arguments, main

This file imports nothing, so that importing one module here loads only that module and what
it needs.
"""
