/* gsthyvideo.c — the `hyvideo` plugin: registers hyvideosrc. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include <gst/gst.h>
#include "gsthyvideosrc.h"

static gboolean
plugin_init (GstPlugin *plugin)
{
  return gst_element_register (plugin, "hyvideosrc", GST_RANK_NONE, GST_TYPE_HYVIDEO_SRC);
}

#ifndef PACKAGE
#define PACKAGE "hyvideo"
#endif

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, hyvideo,
    "HunyuanVideo text-to-video generation (C/CUDA engine, no Python)",
    plugin_init, HV_VERSION, "Apache 2.0", "hyvideo", "Unknown package origin")
